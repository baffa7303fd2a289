"""The figures of README.md and docs/*.md, written from results/ so that they cannot drift from it.

Each generated part of a page sits between ``<!-- figures:NAME -->`` and ``<!-- /figures -->``;
this script rewrites every such part from the measurements under RESULTS (default results/),
and with ``--check`` only says which parts differ (exit 1), as the docs' test does.

    python scripts/docs_figures.py            # after scripts/reproduce.sh (which runs it)
    python scripts/docs_figures.py --check    # exit 1 if a page's figures differ from results/
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from convbench.bench.formats import duration, number, ratio
from convbench.bench.report import summary_table
from convbench.bench.results import RunDirectory, describe_machine, load_results

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PART = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


def _origin(run: Path) -> str:
    """Where a run's rows come from: machine, software, commit and day."""
    session = RunDirectory(run).sessions()[0]
    return f"{describe_machine(session)}; {session['started'][:10]}"


def summary(results: Path) -> str:
    """README: each backend's forward+backward time over the fastest's, per suite, and the targets."""
    rows = load_results(results / "suites")
    rows = rows[rows.direction == "forward+backward"]
    columns = {}
    for suite, mine in rows.groupby("suite", sort=False):
        table = summary_table(mine)
        columns[suite] = [f"{x} ({w} win{'' if w == 1 else 's'})" for x, w in zip(table["x fastest (geomean)"], table["wins"])]
        index = table.index
    table = pd.DataFrame(columns, index=index)
    targets = pd.read_csv(results / "targets" / "targets.csv")
    threads = sorted(set(rows.threads))
    return (f"Forward+backward of every conv and pooling layer of each suite, float32, "
            f"{', '.join(map(str, threads))} thread(s): each backend's time over the fastest's on each layer "
            f"(geometric mean over the suite's layers) and the layers it wins "
            f"([docs/results.md](docs/results.md)). {_origin(results / 'suites')}.\n\n"
            + table.to_markdown() + "\n\n"
            f"Against PyTorch and the machine's peak, {_met(targets)} performance "
            "targets are met ([docs/performance.md](docs/performance.md)).\n")


def suites(results: Path) -> str:
    """results.md: the summary table of every suite, forward+backward."""
    rows = load_results(results / "suites")
    parts = [f"{_origin(results / 'suites')}; medians from one run, the backends of each layer measured in turns.", ""]
    for suite, mine in rows[rows.direction == "forward+backward"].groupby("suite", sort=False):
        parts += [f"**{suite}**", "", summary_table(mine).to_markdown(), ""]
    return "\n".join(parts)


def _met(table: pd.DataFrame) -> str:
    """ "34 of 86" (met of measured), and how many targets were not measured (``met`` left empty)."""
    missing = int(table.met.isna().sum())
    return (f"{int(table.met.eq(True).sum())} of {int(table.met.notna().sum())}"
            + (f" ({missing} not measured)" if missing else ""))


def targets(results: Path) -> str:
    """performance.md: per target and thread count, how many problems meet it, and the misses."""
    table = pd.read_csv(results / "targets" / "targets.csv")
    unit = lambda bound: " %" if "peak" in bound else (" s" if bound.endswith(" s") else "x")  # noqa: E731
    out, missed = [], []
    for (target, bound), mine in table.groupby(["target", "bound"], sort=False):
        row = {"target": target, "bound": bound}
        for threads, those in mine.groupby("threads"):
            u = unit(bound)
            span = (f"{number(those.value.min())}{u}" if len(those) == 1
                    else f"{number(those.value.min())}-{number(those.value.max())}{u}")
            row[f"{threads} thread{'s' if threads > 1 else ''}"] = (
                f"{int(those.met.eq(True).sum())}/{int(those.met.notna().sum())} ({span})")
        out.append(row)
        misses = mine[mine.met.eq(False)].sort_values(["threads", "problem"])
        if len(misses):
            missed.append(f"- {target} ({bound}): " + ", ".join(
                f"{r.problem} {number(r.value)}{unit(bound)} ({r.threads}t)" for r in misses.itertuples()))
    shown = pd.DataFrame(out).fillna("")
    return (f"**{_met(table)} met** (float32; {_origin(results / 'targets' / 'seeds')}). "
            "Per target and thread count, the problems that meet it (and the range of the measured values):\n\n"
            + shown.to_markdown(index=False) + "\n\nMissed:\n\n" + ("\n".join(missed) or "- none") + "\n")


def mnist(results: Path) -> str:
    """training.md: seed 002 on real MNIST per backend."""
    out = []
    for path in sorted((results / "seed002-mnist-t10k").glob("*/train.json")):
        r = json.loads(path.read_text())
        out.append({"backend": r["backend"], "test accuracy": f"{100 * r['test_accuracy']:.2f} %",
                    f"{r['iterations']:,} steps": f"{r['train_s']:.1f} s", "per step": f"{r['step_ms_mean']:.2f} ms",
                    "whole command": f"{r['wall_s']:.1f} s"})
    order = ["naive", "scipy", "im2col", "stride_tricks", "numba"]
    table = pd.DataFrame(out).set_index("backend").reindex([b for b in order if b in {o["backend"] for o in out}])
    return table.to_markdown() + "\n"


def steps(results: Path) -> str:
    """training.md: one whole training step per backend and model."""
    rows = load_results(results / "steps")
    rows = rows[(rows.direction == "step") & (rows.status == "ok")]
    times = rows.pivot_table(index="backend", columns="problem", values="median_s", sort=False)
    cells = {model: [f"**{duration(t)}**" if t == column.min() else f"{duration(t)} ({ratio(t / column.min())})"
                     for t in column] for model, column in times.items()}
    table = pd.DataFrame(cells, index=times.index)
    return (f"Median time of one training step (and its ratio to the fastest), {rows.dtype.iloc[0]}, "
            f"{', '.join(map(str, sorted(set(rows.threads))))} thread(s); {_origin(results / 'steps')}:\n\n"
            + table.to_markdown() + "\n")


CHECKS = [  # (compare file under verdicts/, what it checks, runs), as scripts/verify_verdicts.sh writes them
    *((f"compare-R{n}-R{n + 1}.md", "A/A, quiet", f"R{n} vs R{n + 1}") for n in (1, 3, 5, 7, 9)),
    ("compare-R10-L1.md", "A/A, one core kept busy during the second run", "R10 vs L1"),
    ("compare-P1-S1.md", "power: im2col 1.25x slower, two runs", "P1 vs S1"),
    ("compare-P2-S2.md", "power: the same again", "P2 vs S2"),
    ("compare-ab.md", "power: `convbench ab HEAD SLOWED`", "ab/a vs ab/b"),
    ("compare-ab-aa.md", "A/A: `convbench ab HEAD HEAD`", "ab-aa/a vs ab-aa/b"),
    ("compare-ab-steps.md", "A/A: `convbench ab HEAD HEAD --model lenet5` (steps)", "ab-steps/a vs ab-steps/b"),
    *((f"benchmark-files/compare-bench-{n}.md", "pytest-benchmark A/A, `-k seed002`", f"bench-{n}a vs bench-{n}b")
      for n in (1, 2, 3)),
]


KEY = ["suite", "problem", "backend", "direction", "dtype", "threads"]  # a row of the verdicts' runs and reports


def _compare_rows(path: Path) -> list[dict]:
    """The rows of a compare report's table, each a dict of column name -> cell text."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| suite")), 0)  # the verdicts' table
    table = [line for line in lines[start:] if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]


def _verdicts(path: Path) -> tuple[str, str]:
    """(counts of im2col's rows, counts of the others') from a compare report."""
    cells = _compare_rows(path)

    def count(these) -> str:
        words = pd.Series([c["verdict"].replace(" (REGRESSION)", "") for c in these]).value_counts()
        return ", ".join(f"{n} {w}" for w, n in words.items()) + f" (of {len(these)})"
    im2col = [c for c in cells if c.get("backend") == "im2col"]
    others = [c for c in cells if c.get("backend") != "im2col"]
    return count(im2col) if im2col else "-", count(others)


def _commit(run: Path) -> str:
    """The commit a run directory measured (its first session's), or '-' where it is not one."""
    if not (run / "sessions.jsonl").exists():
        return "-"
    return str(RunDirectory(run).sessions()[0].get("git_commit", "?"))[:7]


def verdicts(results: Path) -> str:
    """methodology.md: the verdicts of every check of scripts/verify_verdicts.sh."""
    base = results / "verdicts"
    out = []
    for name, check, runs in CHECKS:
        path = base / name
        if not path.exists():
            continue
        regressions = int(re.search(r"(\d+) regression", path.read_text()).group(1))
        im2col, others = _verdicts(path)
        out.append({"check": check, "runs": runs, "commit": _commit(base / runs.split(" vs ")[0]),
                    "im2col": im2col, "other backends": others, "exit": 1 if regressions else 0})
    return (f"{_origin(base / 'R1')}; seeds and lenet5 on im2col, numba and stride_tricks, float32, 2 threads, "
            "`--threshold 0.10`:\n\n" + pd.DataFrame(out).to_markdown(index=False) + "\n")


def _turns(run: str, rows: pd.DataFrame, key: tuple) -> str:
    """A row's fastest call per turn in one run, process by process, as "R1's 3 processes: 615 µs-720 µs, ..."."""
    processes = rows.loc[key].turn_fastest_s if key in rows.index else None
    if not isinstance(processes, list) or not processes:
        return f"{run}: not timed"
    spans = [f"{duration(min(p))}-{duration(max(p))}" for p in processes]
    return f"{run}'s {len(processes)} process(es), fastest call per turn {', '.join(spans)}"


def false_verdicts(results: Path) -> str:
    """methodology.md: the verdicts on unchanged code (a quiet A/A pair's, a power check's on the
    backends it did not slow) that say slower or faster, and each run's turns on those rows."""
    lines = []
    for name, check, runs in CHECKS:
        quiet, power = check.startswith("A/A, quiet"), check.startswith("power")
        if not (quiet or power) or not (results / "verdicts" / name).exists():
            continue
        first, second = runs.split(" vs ")
        a, b = (load_results(results / "verdicts" / run).set_index(KEY) for run in (first, second))
        for cells in _compare_rows(results / "verdicts" / name):
            verdict = cells["verdict"].split()[0]
            if verdict not in ("slower", "faster") or (power and cells["backend"] == "im2col"):
                continue  # in a power check, im2col's verdicts are true: it was slowed
            row = tuple(int(cells[k]) if k == "threads" else cells[k] for k in KEY)
            turns = [_turns(run, side, row) for run, side in ((first, a), (second, b))]
            lines.append(f"- {runs}: {' '.join(row[:4])} ({row[5]} threads) called {verdict}, "
                         f"{cells['new/old']}x {cells['95% interval']}; {'; '.join(turns)}")
    return ("\n".join(lines) or "- none: unchanged code got only `same` and `inconclusive`") + "\n"


def fastest(results: Path) -> str:
    """methodology.md: in an A/A pair, how far apart the medians and the fastest calls put identical code."""
    a, b = (load_results(results / "verdicts" / run) for run in ("R1", "R2"))
    both = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    both = both[(both.status_a == "ok") & (both.status_b == "ok")]

    def spread(name: str) -> tuple[float, float]:
        logs = np.log(both[f"{name}_b"] / both[f"{name}_a"])
        return float(logs.quantile(0.75) - logs.quantile(0.25)), float((logs.abs() > np.log(1.1)).mean())
    (iqr_median, apart_median), (iqr_min, apart_min) = spread("median_s"), spread("fastest_s")
    return (f"Over the {len(both)} measurements of the pair, the ratio R2/R1 of the medians has an "
            f"interquartile range of {iqr_median:.3f} in log terms and puts {100 * apart_median:.0f} % of the rows "
            f"more than 10 % apart; the ratio of the fastest calls has an interquartile range of {iqr_min:.3f} and "
            f"puts {100 * apart_min:.0f} % more than 10 % apart: on this machine the fastest calls spread "
            f"{'less' if iqr_min < iqr_median else 'more'} than the medians.\n")


def process_spread(results: Path) -> str:
    """methodology.md: scripts/process_spread.py's rows, one per row and condition."""
    path = results / "verdicts" / "process-spread.jsonl"
    if not path.exists():
        return "Not measured yet: `scripts/verify_verdicts.sh` writes `results/verdicts/process-spread.jsonl`.\n"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    table = pd.DataFrame([{"row": r["row"], "threads": r["threads"], "condition": r["condition"],
                           "each process's speed": ", ".join(duration(s) for s in r["process_speeds_s"]),
                           "the 2-thread calibration product as each began": ", ".join(
                               duration(s) for s in r["machine_threads_s"]),
                           "slowest / fastest process": f"{r['max_over_min']:.2f}",
                           "spread within a process (relative IQR)": f"{r['within_relative_iqr']:.3f}"}
                          for r in rows])
    return (f"{describe_machine(rows[0]['machine'])}; {len(rows[0]['process_speeds_s'])} fresh processes per line:\n\n"
            + table.to_markdown(index=False) + "\n")


def cluster(results: Path) -> str:
    """cluster.md: the cluster path's overhead per cell."""
    r = json.loads((results / "cluster-overhead" / "overhead.json").read_text())
    local, remote = r["seconds"]["local"], r["seconds"]["cluster"]
    spread = max(max(local) - min(local), max(remote) - min(remote)) / r["cells"]
    trips = r["empty_task_round_trips_s"]
    return (f"{r['cpu']} ({r['cores']} cores), commit {r['git_commit']}, {r['started'][:10]}: {r['cells']} cells "
            f"measured here and through the cluster in alternation, {len(local)} times each: "
            f"{duration(r['local_median_s'] / r['cells'])} vs {duration(r['cluster_median_s'] / r['cells'])} per cell "
            f"(medians), an overhead of {duration(r['overhead_per_cell_s'])} per cell, against a spread of "
            f"{duration(spread)} per cell between repetitions of one side. An empty task's round trip through the "
            f"scheduler: {duration(statistics.median(trips))} median ({len(trips)} in a row, slowest "
            f"{duration(max(trips))}).\n")


MISSES = [  # (run under targets/, problem, direction, threads): numba against torch, for performance.md's analysis
    ("resnet18-b8", "layer2_conv_s2", "forward", 2),
    ("resnet18-b8", "layer2_conv_s2", "forward+backward", 2),
    ("lenet5-b64", "conv2", "forward", 1),
    ("lenet5-b64", "conv2", "forward+backward", 1),
    ("lenet5-b64", "conv2", "forward", 2),
    ("lenet5-b64", "conv2", "forward+backward", 2),
]


def misses(results: Path) -> str:
    """performance.md: the measurements its analysis of the misses talks about, from results/targets
    ("-" where one was not measured)."""
    base = results / "targets"
    lines = ["| run | layer | direction | threads | numba | im2col | torch | numba / torch |", "|---|---|---|---|---|---|---|---|"]
    runs = {run: load_results(base / run) for run in dict.fromkeys(run for run, *_ in MISSES)}
    for run, problem, direction, threads in MISSES:
        rows = runs[run]
        mine = rows[(rows.problem == problem) & (rows.direction == direction) & (rows.threads == threads)
                    & (rows.status == "ok")].set_index("backend").median_s
        numba, im2col, torch = (mine.get(b, np.nan) for b in ("numba", "im2col", "torch"))
        ratio = f"{numba / torch:.2f}x" if numba / torch == numba / torch else "-"
        lines.append(f"| {run} | {problem} | {direction} | {threads} | {duration(numba)} | {duration(im2col)} "
                     f"| {duration(torch)} | {ratio} |")
    rows = runs["resnet18-b8"]
    peak = rows[(rows.problem == "layer2_conv_s2") & (rows.direction == "forward") & (rows.status == "ok")]
    shares = ", ".join(f"{r.backend} {r.pct_of_peak:.1f} % ({r.threads}t)" for r in
                       peak[peak.backend.isin(["im2col", "numba"])].sort_values(["threads", "backend"]).itertuples())
    steps = load_results(base / "step-2t")
    steps = steps[(steps.problem == "lenet5-b64") & (steps.direction == "step") & (steps.status == "ok")].set_index("backend")
    step = {b: steps.loc[b] if b in steps.index else pd.Series(dtype=float) for b in ("numba", "torch")}
    split = ", ".join(f"{kind} {duration(step['numba'].get(f'{kind}_s', np.nan))}" for kind in ("conv", "pool", "dense", "other"))
    return ("\n".join(lines) + f"\n\nResNet-18 layer2_conv_s2's forward as a share of the measured SGEMM peak: "
            f"{shares or '-'}. The lenet5 step at 2 threads: numba {duration(step['numba'].get('median_s', np.nan))}, "
            f"torch {duration(step['torch'].get('median_s', np.nan))}; numba's instrumented steps split into {split}.\n")


SWEEP_ROWS = 7992  # the full sweep of docs/cluster.md: Plan(...).keys() of its six suites, batches and threads
WORST_ROW_S = 70  # a row whose calls outlast the budget: its first call and MIN_SAMPLES more, under --max-time


def _hours(seconds: float) -> str:
    return (f"{seconds / 86400:.1f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:.1f} h" if seconds >= 3600
            else f"{seconds / 60:.0f} min")


def sweep(results: Path) -> str:
    """cluster.md: what a row cost in the targets runs, and what a full sweep would take."""
    rates = {}
    for name in ("seeds", "lenet5-b64", "resnet18-b8"):
        run = RunDirectory(results / "targets" / name)
        rows = run.rows()
        seconds = (pd.Timestamp(rows[-1]["time"]) - pd.Timestamp(run.sessions()[0]["started"])).total_seconds()
        rates[name] = seconds / len(rows)
    rate = max(rates.values())
    lines = ["The runs in `results/targets` took " + ", ".join(f"{r:.1f} s a row ({n})" for n, r in rates.items())
             + " at the default budget of 1 s, everything included (verification, probes, compilation, "
             "calibration).", "",
             "| | one machine | 8 workers | 64 workers |", "|---|---|---|---|"]
    for label, per_row in ((f"at {rate:.1f} s a row (the slowest rate above)", rate),
                           (f"every row at its worst ({WORST_ROW_S} s)", WORST_ROW_S)):
        total = SWEEP_ROWS * per_row
        lines.append(f"| {label} | {_hours(total)} | {_hours(total / 8)} | {_hours(total / 64)} |")
    return "\n".join(lines) + "\n"


FIGURES = {"summary": summary, "suites": suites, "targets": targets, "mnist": mnist, "steps": steps,
           "verdicts": verdicts, "fastest": fastest, "cluster": cluster,
           "sweep": sweep, "misses": misses, "false-verdicts": false_verdicts,
           "process-spread": process_spread}


def render(page: str, results: Path) -> str:
    """``page`` with every figures part written from ``results``."""
    def part(m: re.Match) -> str:
        if m["name"] not in FIGURES:
            raise SystemExit(f"docs_figures: unknown figures part {m['name']!r} (known: {', '.join(FIGURES)})")
        return m.group(1) + FIGURES[m["name"]](results) + m.group(4)
    return PART.sub(part, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results"), metavar="DIR", help="default results/")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = render(text, Path(args.results))
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print("figures differ from results/ in: " + ", ".join(map(str, stale))
              + "; run python scripts/docs_figures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
