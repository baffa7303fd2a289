"""Problem suites: CSV tables shipped in ``convbench/bench/suites/``, or oneDNN benchdnn batch files.

A suite CSV has one named layer per row::

    name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat
    conv1,conv2d,1,3,224,224,64,7,7,2,3,1,1,1

``stride``, ``padding`` and ``dilation`` are an int or ``HxW`` (``2x1``); for pooling rows K
equals C and (R, S) is the window. ``repeat`` counts how often the layer occurs in its model.
Suites are append-only: a row's name and shape never change once published.

A benchdnn file has one problem descriptor per line, ``mb8ic64ih56oc64kh3ph1n"resnet_2a"``,
optionally after options on the same line; ``#`` starts a comment. As in benchdnn, options apply
to every descriptor after them until ``--reset``: ``--alg=max|avg_p`` (pooling), ``--mb=N``,
``--dir=`` FWD_D, FWD_B or FWD_I (measured as ``forward``), BWD_D, BWD_W or BWD_WB (measured as
``backward``, which computes every gradient at once) and ``--dt=``/``--cfg=`` f32 or f64. Any other
option or value is refused with its line number rather than ignored. A descriptor with ``oc`` is
a convolution, one without is a pooling problem. Names must be unique in a file (an unnamed
descriptor is named by its own text). As in benchdnn, missing width fields copy the
height ones, ``oh`` / ``ow`` are checked against the computed output size, and dilation counts
from 0 (``dh1`` is a dilation of 2).
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

from convbench.bench.errors import InputError, clip
from convbench.bench.limits import MAX_SIZE
from convbench.bench.problems import OPS, Problem

COLUMNS = ("name", "op", "N", "C", "H", "W", "K", "R", "S", "stride", "padding", "dilation", "groups", "repeat")


class SuiteError(InputError):
    """A suite file or descriptor that cannot be read; the message names the line and the field."""


def suite_names() -> list[str]:
    """The suites shipped with convbench."""
    return sorted(p.name.removesuffix(".csv") for p in resources.files("convbench.bench.suites").iterdir()
                  if p.name.endswith(".csv"))


def _int(text: str, where: str, field: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise SuiteError(f"{where}: field {field!r} must be an integer; got {clip(repr(text), 80)}") from None
    if not minimum <= value <= MAX_SIZE:
        raise SuiteError(f"{where}: field {field!r} must be between {minimum} and {MAX_SIZE:,}; got {clip(str(value), 40)}")
    return value


def _pair(text: str, where: str, field: str, minimum: int) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    if len(parts) > 2:
        raise SuiteError(f"{where}: field {field!r} must be an int or HxW; got {clip(repr(text), 80)}")
    values = [_int(p, where, field, minimum) for p in parts]
    return (values[0], values[-1])


def _problem(where: str, **fields) -> Problem:
    try:
        return Problem(**fields)
    except ValueError as exc:
        raise SuiteError(f"{where}: {exc}") from None


def _read_text(path: str | Path) -> str:
    """A suite file's text (a byte-order mark dropped); SuiteError naming it if it is not text."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a suite is a CSV "
                         "or a benchdnn batch file") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_csv(path: str | Path, text: str | None = None) -> list[Problem]:
    """Problems from a suite CSV (``text`` instead of reading ``path``, if given)."""
    text = _read_text(path) if text is None else text
    try:
        return _read_rows(path, csv.DictReader(text.splitlines()))
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte
        raise SuiteError(f"{path}: not a readable CSV ({clip(str(exc))})") from None


def _read_rows(path, reader: csv.DictReader) -> list[Problem]:
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SuiteError(f"{path}:1: the header lacks the column(s) {', '.join(clip(c, 40) for c in missing)}")
    problems, seen = [], set()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or None in row.values():  # csv.DictReader's marks of extra and missing fields
            count = f"{len(reader.fieldnames) + len(row[None])}" if None in row else "fewer"
            raise SuiteError(f"{where}: {count} fields where the header has {len(reader.fieldnames)}")
        name = (row["name"] or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise SuiteError(f"{where}: field 'name' must be letters, digits, '_', '.' or '-'; got {clip(name, 80)!r}")
        if name in seen:
            raise SuiteError(f"{where}: field 'name': {name!r} appears twice")
        seen.add(name)
        if row["op"] not in OPS:
            raise SuiteError(f"{where}: field 'op' must be one of {', '.join(OPS)}; got {clip(repr(row['op']), 80)}")
        ints = {f: _int(row[f], where, f, 1) for f in ("N", "C", "H", "W", "K", "R", "S", "groups", "repeat")}
        problems.append(_problem(
            where, name=name, op=row["op"], **ints,
            stride=_pair(row["stride"], where, "stride", 1),
            padding=_pair(row["padding"], where, "padding", 0),
            dilation=_pair(row["dilation"], where, "dilation", 1),
        ))
    return problems


_FIELD = re.compile(r'([a-z]+)(\d+|"[^"]*")')
_KNOWN = {"g", "mb", "ic", "ih", "iw", "oc", "oh", "ow", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "n"}


def parse_descriptor(text: str, where: str = "descriptor", alg: str = "max", mb: int | None = None,
                     alg_given: bool = False) -> Problem:
    """One benchdnn descriptor (``mb8ic64ih56oc64kh3ph1n"resnet_2a"``) as a Problem; ``alg_given``:
    the file set ``--alg``, which a convolution descriptor may not follow."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _FIELD.match(text, position)  # anchored: linear in the line, however long
        if match is None:
            raise SuiteError(f"{where}: cannot read {clip(repr(text[position:]), 80)} at column {position + 1}")
        key, value = match.groups()
        if key not in _KNOWN:
            raise SuiteError(f"{where}: unknown field {key!r} (3-D fields such as id/kd are not supported)")
        if key in fields:
            raise SuiteError(f"{where}: field {key!r} appears twice")
        fields[key] = value
        position = match.end()
    for key in ("ic", "ih", "kh"):
        if key not in fields:
            raise SuiteError(f"{where}: field {key!r} is required")
    get = lambda key, default, minimum: _int(fields.get(key, default), where, key, minimum)  # noqa: E731
    ih, kh, sh, ph, dh = get("ih", None, 1), get("kh", None, 1), get("sh", 1, 1), get("ph", 0, 0), get("dh", 0, 0)
    shape = dict(
        N=mb or get("mb", 2, 1),  # benchdnn's default minibatch is 2
        C=get("ic", None, 1), H=ih, W=get("iw", ih, 1), R=kh, S=get("kw", kh, 1),
        stride=(sh, get("sw", sh, 1)), padding=(ph, get("pw", ph, 0)),
    )
    name = fields.get("n", '""')[1:-1] or text
    if "oc" in fields:
        if alg_given:
            raise SuiteError(f"{where}: --alg={alg} is a pooling algorithm, but this descriptor has 'oc' (a "
                             "convolution); put --reset before it")
        problem = _problem(where, name=name, op="conv2d", K=get("oc", None, 1), groups=get("g", 1, 1),
                           dilation=(dh + 1, get("dw", dh, 0) + 1), **shape)
    else:
        for key in ("g", "dh", "dw"):
            if key in fields:
                raise SuiteError(f"{where}: field {key!r} does not apply to pooling (no 'oc' given)")
        op = {"max": "maxpool2d", "pooling_max": "maxpool2d", "avg_p": "avgpool2d",
              "pooling_avg_include_padding": "avgpool2d"}.get(alg)
        if op is None:
            raise SuiteError(f"{where}: pooling algorithm {alg!r} is not supported; use max or avg_p")
        problem = _problem(where, name=name, op=op, K=shape["C"], **shape)
    for key, computed in (("oh", problem.out_h), ("ow", problem.out_w)):
        if key in fields and _int(fields[key], where, key, 1) != computed:
            raise SuiteError(f"{where}: field {key!r} is {clip(fields[key], 40)} but the other fields give {computed}")
    return problem


DIRECTIONS = {"FWD_D": "forward", "FWD_B": "forward", "FWD_I": "forward",
              "BWD_D": "backward", "BWD_W": "backward", "BWD_WB": "backward"}
DTYPES = {"f32": "float32", "f64": "float64"}
ALGORITHMS = ("max", "pooling_max", "avg_p", "pooling_avg_include_padding")


def _option(option: str, where: str, state: dict) -> None:
    """Apply one benchdnn option to ``state``, or refuse it, naming the line."""
    key, _, value = option.partition("=")
    if key == "--reset":
        state.update(alg="max", alg_given=False, mb=None, directions=(), dtypes=())
    elif key == "--mb":
        state["mb"] = _int(value, where, "--mb", 0) or None  # benchdnn: 0 keeps each line's own mb
    elif key == "--alg" and value in ALGORITHMS:
        state.update(alg=value, alg_given=True)
    elif key == "--dir" and all(v in DIRECTIONS for v in value.split(",")):
        state["directions"] = tuple(dict.fromkeys(DIRECTIONS[v] for v in value.split(",")))
    elif key in ("--dt", "--cfg") and all(v in DTYPES for v in value.split(",")):
        state["dtypes"] = tuple(dict.fromkeys(DTYPES[v] for v in value.split(",")))
    else:
        known = {"--alg": ", ".join(ALGORITHMS), "--dir": ", ".join(DIRECTIONS), "--dt": ", ".join(DTYPES),
                 "--cfg": ", ".join(DTYPES)}
        raise SuiteError(f"{where}: option {clip(option)!r} does not map onto convbench's interface"
                         + (f" (it takes {known[key]})" if key in known else
                            " (supported: --alg, --dir, --dt, --cfg, --mb, --reset)"))


def read_benchdnn(path: str | Path, text: str | None = None) -> list[Problem]:
    """Problems from a benchdnn batch file: options, then a descriptor, on each line."""
    text = _read_text(path) if text is None else text
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    state = {"alg": "max", "alg_given": False, "mb": None, "directions": (), "dtypes": ()}
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        tokens = raw.split("#", 1)[0].split()
        while tokens and tokens[0].startswith("--"):
            _option(tokens.pop(0), where, state)
        if len(tokens) > 1:
            raise SuiteError(f"{where}: one descriptor per line, after the options; got {clip(' '.join(tokens))!r}")
        if not tokens:
            continue
        problem = parse_descriptor(tokens[0], where, state["alg"], state["mb"], state["alg_given"])
        if problem.name in seen:
            raise SuiteError(f"{where}: the name {clip(problem.name)!r} was already used at {seen[problem.name]}; "
                             "give each problem its own n\"...\"")
        seen[problem.name] = where
        problems.append(replace(problem, directions=state["directions"], dtypes=state["dtypes"]))
    return problems


def load_suite(name_or_path: str, batch: int | None = None) -> list[Problem]:
    """A shipped suite by name, or a suite CSV or benchdnn file by path; ``batch`` overrides N."""
    if name_or_path in suite_names():
        text = resources.files("convbench.bench.suites").joinpath(f"{name_or_path}.csv").read_text()
        problems = read_csv(f"suites/{name_or_path}.csv", text)
    elif Path(name_or_path).is_file():
        path = Path(name_or_path)
        text = _read_text(path)
        first = text.lstrip().split(",", 1)[0]
        problems = read_csv(path, text) if first == "name" else read_benchdnn(path, text)
    else:
        raise SuiteError(
            f"suite {clip(repr(name_or_path), 120)} is neither a shipped suite ({', '.join(suite_names())}) nor a file"
        )
    if not problems:
        raise SuiteError(f"suite {clip(repr(name_or_path), 120)} holds no problems")
    return [p.with_batch(batch) for p in problems] if batch else problems
