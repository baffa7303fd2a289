"""How much of oneDNN's own benchdnn conv inputs convbench reads, and reads as benchdnn does.

    python scripts/benchdnn_coverage.py ONEDNN/tests/benchdnn/inputs/conv [--out FILE.md]

For every ``shapes_*`` file there: each descriptor word (a word that is not an option) read by
convbench's grammar (convbench.bench.suites.descriptor) and by the line-by-line transcription of
benchdnn's str2desc / sanitize_desc / init_pad_r (tests/benchdnn_oracle.py), compared field by
field; then the whole file read as ``convbench run --suite FILE`` reads it, with what it skips.
Prints (or writes) a Markdown table per file and the totals. The files are not part of convbench:
fetch oneDNN (https://github.com/oneapi-src/oneDNN) and point this at its folder.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from benchdnn_oracle import str2desc  # noqa: E402 (the oracle lives with the tests)

from convbench.bench.errors import InputError  # noqa: E402
from convbench.bench.suites import read_benchdnn  # noqa: E402
from convbench.bench.suites.benchdnn import words  # noqa: E402
from convbench.bench.suites.descriptor import DescriptorError, parse  # noqa: E402


def _fields(text: str) -> dict | None:
    try:
        return parse(text).desc_t()
    except DescriptorError:
        return None


def survey(path: Path) -> dict:
    """One file's counts."""
    counts = Counter()
    for word, _ in words(path.read_text(), path):
        if word.startswith("-"):
            continue
        theirs, ours = str2desc(word), _fields(word)
        kind = "refused" if theirs is None else {3: "1-D", 4: "2-D", 5: "3-D"}[theirs["ndims"]]
        counts[kind] += 1
        counts[f"{kind} same"] += theirs == ours
        counts["asymmetric"] += theirs is not None and theirs["ndims"] < 5 and (
            theirs["ph"] != theirs["ph_r"] or theirs["pw"] != theirs["pw_r"])
    try:
        reading = read_benchdnn(path)
        counts["problems"] = len(reading.problems)
        counts["skipped"] = sum(map(len, reading.skipped.values()))
        note = "; ".join(reading.lines())
    except InputError as exc:
        note = f"refused: {exc}"
    return {"file": path.name, **counts, "notes": note}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="oneDNN's tests/benchdnn/inputs/conv")
    parser.add_argument("--out", type=Path, help="write the tables there instead of printing them")
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("shapes_*"))
    if not files:
        parser.error(f"no shapes_* files in {args.folder}")
    table = pd.DataFrame([survey(f) for f in files]).fillna(0)
    numbers = [c for c in table.columns if c not in ("file", "notes")]
    table[numbers] = table[numbers].astype(int)
    total = table[numbers].sum()
    planar = total.get("1-D", 0) + total.get("2-D", 0)
    same = total.get("1-D same", 0) + total.get("2-D same", 0)
    summary = (f"{len(files)} files, {int(total.sum() and planar + total.get('3-D', 0) + total.get('refused', 0)):,} "
               f"descriptors: {int(planar):,} 1-D and 2-D, {int(same):,} of them read as benchdnn reads them "
               f"({same / max(planar, 1):.2%}); {int(total.get('3-D', 0)):,} 3-D; {int(total.get('refused', 0)):,} "
               f"that benchdnn refuses; {int(total.get('asymmetric', 0)):,} with a far-end padding unlike the "
               f"near one; {int(total.get('problems', 0)):,} problems to run, {int(total.get('skipped', 0)):,} skipped.")
    text = f"{summary}\n\n{table.to_markdown(index=False)}\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
