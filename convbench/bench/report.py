"""``convbench report RUN``: Markdown tables and PNG plots of a run directory.

The tables follow ``torch.utils.benchmark.Compare``: backends as rows, problems as columns,
each cell the median time and its ratio to the best backend on that problem, then the winner
per problem. The summary gives each backend's geometric-mean speedup over the baseline (naive) and ratio
to the fastest (over the problems where both were measured), and its whole-model time (the sum
of median times weighted by how often each layer repeats) where every layer was measured.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from convbench.bench import backends
from convbench.bench.errors import InputError
from convbench.bench.results import load_results

SECTION_ORDER = ("step", "forward+backward", "forward", "backward", "update")  # step, update: convbench step


def duration(seconds: float) -> str:
    """Seconds as three significant digits in the unit that suits them ("4.21 ms"); NaN (not
    measured) as "-"."""
    if seconds != seconds:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _mebibytes(count: float) -> str:
    mib = count / 2**20
    return f"{mib:.3g} MiB" if mib < 1000 else f"{mib:,.0f} MiB"


def _ratio(value: float) -> str:
    return f"{value:.3g}x" if value < 100 else f"{value:.0f}x"


def _geomean(values) -> float:
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0])
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


def _contenders(ok: pd.DataFrame) -> pd.DataFrame:
    """The rows that compete for "best" (a backend that picks others only repeats its pick), per
    problem: where no contender has a time (all skipped, say), the other rows stand in."""
    real = ok.backend.isin(backends.contenders(ok.backend))
    return ok[real | ~real.groupby(ok.problem).transform("any")]


NOISY_MARK, CONTENDED_MARK = "~", "!"
MARKS = (f"`{NOISY_MARK}` noisy: the median of the turns' times spread by more than 10 % (IQR / median); "
         f"`{CONTENDED_MARK}` contended: other processes held the cores this measurement asked for.")


def _marks(row) -> str:
    return ((NOISY_MARK if row.get("noisy") is True else "")
            + (CONTENDED_MARK if row.get("contended") is True else ""))


def compare_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One suite x direction: backends as rows, problems as columns, 'median (x best)' cells, all
    in one time unit (returned with the table); noisy and contended cells are marked."""
    from convbench.bench.compare import time_unit

    problems = list(dict.fromkeys(rows["problem"]))
    order = backends.order(rows["backend"])
    best = _contenders(rows[rows.status == "ok"]).groupby("problem")["median_s"].min()
    unit, scale = time_unit(rows.loc[rows.status == "ok", "median_s"])
    table = pd.DataFrame(index=order, columns=problems, dtype=object)
    for _, r in rows.iterrows():
        if r.status == "ok":
            cell = f"{r.median_s / scale:.3g} ({_ratio(r.median_s / best[r.problem])}){_marks(r)}"
            table.loc[r.backend, r.problem] = f"**{cell}**" if r.median_s == best[r.problem] else cell
        else:
            table.loc[r.backend, r.problem] = r.status
    winners = _contenders(rows[rows.status == "ok"]).loc[lambda d: d.groupby("problem")["median_s"].idxmin()]
    table.loc["winner"] = [winners.set_index("problem")["backend"].get(p, "-") for p in problems]
    return table.fillna("-"), unit


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One suite x direction: per backend, geometric means over problems and whole-model time."""
    timed = rows[rows.status == "ok"]
    ok = timed.pivot_table(index="problem", columns="backend", values="median_s")
    repeat = rows.drop_duplicates("problem").set_index("problem")["repeat"]
    contenders = _contenders(timed).pivot_table(index="problem", columns="backend", values="median_s")
    baseline = backends.baseline(ok.columns)
    best = contenders.min(axis=1)
    out = []
    for backend in backends.order(rows["backend"]):
        times = ok[backend] if backend in ok else pd.Series(dtype=float)
        complete = times.notna().all() and len(times) == len(repeat)
        mine = timed[timed.backend == backend]
        # training-step rows (convbench step) have no FLOP count and no memory measurement
        pct = mine["pct_of_peak"].dropna() if "pct_of_peak" in mine else pd.Series(dtype=float)
        memory = mine["peak_mem_bytes"].dropna() if "peak_mem_bytes" in mine else pd.Series(dtype=float)
        out.append({
            "backend": backend,
            "measured": f"{int(times.notna().sum())}/{len(repeat)}",
            f"speedup over {baseline or 'the baseline'} (geomean)": (
                _ratio(_geomean(ok[baseline] / times)) if baseline and backend != baseline else "-"),
            "x fastest (geomean)": _ratio(_geomean(times / best)),
            "wins": int((contenders.idxmin(axis=1) == backend).sum()),
            "model time (sum x repeat)": duration(float((times * repeat.reindex(times.index)).sum())) if complete else "-",
            "% of SGEMM peak (median)": f"{pct.median():.2g}" if len(pct) else "-",
            "largest extra memory": _mebibytes(memory.max()) if len(memory) else "-",
        })
    table = pd.DataFrame(out).set_index("backend")
    if (rows.op == "train_step").all():  # whole training steps of different models do not add up
        table = table.drop(columns="model time (sum x repeat)")
    # a column with nothing in it (no baseline, no FLOPs, no memory: training steps) is left out
    return _without_empty_columns(table)


def _without_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the columns that hold only "-"."""
    return table.loc[:, [c for c in table.columns if not (table[c].astype(str) == "-").all()]]


def _number(value) -> bool:
    """A measured number (numpy's included), not NaN, None or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def picks_table(rows: pd.DataFrame, picker: str) -> pd.DataFrame | None:
    """A picking backend's (auto's) pick per problem and its cost: its median over its pick's,
    and over the fastest of our contenders' (the yardstick left out) in the same run."""
    ok = rows[rows.status == "ok"]
    mine = ok[ok.backend == picker]
    if mine.empty or len(ok.backend.unique()) < 2 or "pick" not in mine or not mine["pick"].map(
            lambda p: isinstance(p, str)).any():  # no pick recorded (a training step picks per layer)
        return None
    times = ok.pivot_table(index="problem", columns="backend", values="median_s")
    times = times[backends.ours(times.columns)]
    out = []
    for r in mine.itertuples():
        pick, others = getattr(r, "pick", None), times.loc[r.problem].dropna()
        alone = others.get(pick, np.nan) if isinstance(pick, str) else np.nan
        out.append({
            "problem": r.problem, "pick": pick if isinstance(pick, str) else "-",
            picker: duration(r.median_s), "pick alone": duration(alone),
            f"{picker} / pick": _ratio(r.median_s / alone) if alone == alone else "-",
            "fastest": others.idxmin() if len(others) else "-",
            f"{picker} / fastest": _ratio(r.median_s / others.min()) if len(others) else "-",
        })
    return pd.DataFrame(out).set_index("problem")


def _machine(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    lines = [f"- CPU: {first.get('cpu')} ({first.get('cores')} cores), {first.get('os')}",
             f"- BLAS: {first.get('blas')}; numpy {first.get('numpy_version')}, scipy {first.get('scipy_version')}, "
             f"numba {first.get('numba_version')}, Python {first.get('python_version')}",
             f"- convbench commit {first.get('git_commit')}; started {first.get('started')}"]
    for threads, group in frame.dropna(subset=["peak_gflops"]).groupby("threads"):
        lines.append(f"- {threads} thread(s): measured SGEMM peak {group.peak_gflops.median():.1f} GFLOP/s, "
                     f"copy bandwidth {group.bandwidth_gbs.median():.1f} GB/s")
    return "\n".join(lines)


def machines_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One suite x direction x dtype x threads on several machines: (problem, backend) as rows,
    machines as columns, each cell the median and its ratio to the best backend on that machine,
    and each problem's winner per machine (asv's results of several machines side by side)."""
    from convbench.bench.compare import machines, time_unit

    ok = rows[rows.status == "ok"]
    unit, scale = time_unit(ok["median_s"])
    names = machines(rows)
    records = []
    for problem in dict.fromkeys(rows["problem"]):
        mine = ok[ok.problem == problem]
        contenders = {m: _contenders(mine[mine.machine == m]) for m in names}
        best = {m: c.median_s.min() if len(c) else np.nan for m, c in contenders.items()}
        for backend in backends.order(rows["backend"]):
            record = {"problem": problem, "backend": backend}
            for m in names:
                hit = mine[(mine.machine == m) & (mine.backend == backend)]
                if hit.empty:
                    record[m] = "-"
                    continue
                t = hit.median_s.iloc[0]
                cell = f"{t / scale:.3g} ({_ratio(t / best[m])}){_marks(hit.iloc[0])}"
                record[m] = f"**{cell}**" if t == best[m] else cell
            records.append(record)
        records.append({"problem": problem, "backend": "winner",
                        **{m: c.loc[c.median_s.idxmin(), "backend"] if len(c) else "-" for m, c in contenders.items()}})
    return pd.DataFrame(records), unit


def _machines_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per machine: what it is and how fast it measured itself."""
    out = []
    for name, rows in frame.groupby("machine", sort=True):
        first = rows.iloc[0]
        peaks = rows.dropna(subset=["peak_gflops"]).groupby("threads").peak_gflops.median()
        out.append({"machine": name, "CPU": first.get("cpu"), "cores": first.get("cores"), "BLAS": first.get("blas"),
                    "SGEMM peak (GFLOP/s)": ", ".join(f"{p:.0f} at {t}t" for t, p in peaks.items()) or "-",
                    "calibration (median)": duration(rows.calibration_s.median()) if "calibration_s" in rows
                    and rows.calibration_s.notna().any() else "-",
                    "rows": len(rows)})
    return pd.DataFrame(out).set_index("machine")


def _sections(frame: pd.DataFrame, prefix: str = "") -> list[str]:
    """The per-suite tables of one machine's rows."""
    parts = []
    groups = frame.groupby(["threads", "dtype", "suite"], sort=False)
    for (threads, dtype, suite), suite_rows in groups:
        parts.append(f"## {prefix}{suite} ({dtype}, {threads} thread{'s' if threads > 1 else ''})")
        parts.append("")
        for direction in SECTION_ORDER:
            rows = suite_rows[suite_rows.direction == direction]
            if rows.empty:
                continue
            table, unit = compare_table(rows)
            parts += [f"### {direction}", "", summary_table(rows).to_markdown(), "",
                      f"Median times in {unit} (ratio to the best):", "", table.to_markdown(), ""]
            for picker in backends.pickers(rows.backend):
                picks = picks_table(rows, picker)
                if picks is not None:
                    parts += [f"{picker}'s picks (timed on first sight) and its overhead, in this run:", "",
                              picks.to_markdown(), ""]
        skipped = suite_rows[suite_rows.status.isin(["skipped", "wrong", "error", "unavailable"])]
        if len(skipped):
            parts += ["Not timed:", ""]
            parts += [f"- {r.problem} {r.backend} {r.direction}: {r.status}, {r.reason}" for r in skipped.itertuples()]
            parts.append("")
    return parts


# convbench report --columns / --sort: the names a reader uses -> how a row gives them
MEASUREMENT_COLUMNS = {
    "machine": "machine", "suite": "suite", "problem": "problem", "batch": "N", "backend": "backend",
    "direction": "direction", "dtype": "dtype", "threads": "threads", "status": "status",
    "min": "min_s", "fastest": "fastest_s", "median": "median_s", "iqr": "iqr_s", "calls": "calls",
    "processes": "processes", "gflops": "gflops", "peak%": "pct_of_peak", "memory": "peak_mem_bytes",
}
DEFAULT_COLUMNS = ("suite", "problem", "backend", "direction", "dtype", "threads", "min", "median", "iqr",
                   "calls", "gflops")
TIMES = ("min", "fastest", "median", "iqr")


def _names(option: str, given: list[str] | None, default: tuple[str, ...]) -> list[str]:
    names = list(default) if not given else [n.strip().lstrip("-") for n in given]
    bad = [n for n in names if n not in MEASUREMENT_COLUMNS]
    if bad:
        raise InputError(f"{option} takes column names among {', '.join(MEASUREMENT_COLUMNS)}; got {', '.join(bad)}")
    return names


def measurements_table(frame: pd.DataFrame, columns: list[str] | None = None,
                       sort: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Every measurement as a row (pytest-benchmark's and asv's long table): ``columns`` to show,
    ``sort`` keys ("-median" for descending), times in one unit; returns (table, unit)."""
    from convbench.bench.compare import time_unit

    shown = _names("--columns", columns, DEFAULT_COLUMNS)
    keys = _names("--sort", sort, ())
    descending = [k.strip().startswith("-") for k in (sort or [])]
    rows = frame.copy()
    for name in set(shown) | set(keys):
        if MEASUREMENT_COLUMNS[name] not in rows:
            rows[MEASUREMENT_COLUMNS[name]] = np.nan
    if keys:
        rows = rows.sort_values([MEASUREMENT_COLUMNS[k] for k in keys], ascending=[not d for d in descending],
                                kind="stable", na_position="last")
    unit, scale = time_unit(rows.loc[rows.status == "ok", "median_s"])
    table = pd.DataFrame(index=range(len(rows)))
    for name in shown:
        values = rows[MEASUREMENT_COLUMNS[name]].to_numpy()
        if name in TIMES:
            table[f"{name} ({unit})"] = [f"{v / scale:.4g}" if _number(v) else "-" for v in values]
        elif name in ("gflops", "peak%"):
            table[name] = [f"{v:.3g}" if _number(v) else "-" for v in values]
        elif name == "memory":
            table["memory"] = [_mebibytes(v) if _number(v) else "-" for v in values]
        else:
            table[name] = ["-" if v is None or (isinstance(v, float) and v != v) else v for v in values]
    if not columns:  # by default, a column with nothing in it (GFLOP/s of training steps) is left out
        table = _without_empty_columns(table)
    return table, unit


def write_report(paths: str | Path | list, plots: bool = True, out: str | Path | None = None,
                 columns: list[str] | None = None, sort: list[str] | None = None) -> list[Path]:
    """Write OUT/report.md (and OUT/plots/*.png); return the files written.

    ``paths``: a run directory, a pytest-benchmark JSON file (whose report goes to a folder
    beside it, NAME-report/), or several of them, whose rows are reported together (``out`` is
    then required). Rows of several machines (a run measured on a cluster, or runs from several
    machines) get a table across machines first, then each machine's own tables.
    """
    from convbench.bench.compare import machines
    from convbench.bench.runs import writable_folder

    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    if len(paths) > 1 and out is None:
        raise InputError(f"{len(paths)} runs are reported together into one folder: give --out DIR")
    frame = pd.concat([load_results(p) for p in paths], ignore_index=True) if len(paths) > 1 else load_results(paths[0])
    path = Path(out) if out is not None else paths[0]
    if out is None and path.is_file():
        path = path.with_name(f"{path.stem}-report")
    writable_folder(path, "--out" if out is not None else "the report's folder")
    path.mkdir(parents=True, exist_ok=True)
    if frame.empty:
        raise InputError(f"{', '.join(map(str, paths))} holds no measurements yet")
    names = machines(frame)
    every, every_unit = measurements_table(frame, columns, sort)  # bad --columns/--sort fail before any file is written
    parts = [f"# convbench report: {path.name}", "", *_preamble(frame, names), *_body(frame, names),
             "## All measurements", "",
             f"One row per measurement, times in {every_unit} (`convbench report --columns ... --sort ...`; "
             f"columns: {', '.join(MEASUREMENT_COLUMNS)}).", "", every.to_markdown(index=False), ""]
    written = _plots(frame, names, path) if plots else []
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(path).as_posix()})" for p in written] + [""]
    report = path / "report.md"
    report.write_text("\n".join(parts))
    return [report, *written]


def _preamble(frame: pd.DataFrame, names: list) -> list[str]:
    """The machine (or machines), the statuses, how to read a cell, and the flagged share."""
    statuses = frame.status.value_counts()
    parts = [_machine(frame), ""] if len(names) <= 1 else [
        f"{len(names)} machines; each one's tables come from its own rows, the backends of each problem "
        "measured in turns on that machine.", "", _machines_summary(frame).to_markdown(), ""]
    parts += ["Statuses: " + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ".",
              "Cells: median time, one unit per table (ratio to the best backend on that problem); **bold** "
              "is the best. Medians and ratios come from one run on one machine, the backends of each "
              "problem measured in turns. " + MARKS, ""]
    for flag in ("noisy", "contended"):
        marked = int((frame[flag] == True).sum()) if flag in frame else 0  # noqa: E712
        if marked:
            parts += [f"{marked} of {len(frame)} measurement(s) were {flag}.", ""]
    return parts


def _body(frame: pd.DataFrame, names: list) -> list[str]:
    """One machine's sections, or a table across machines followed by each machine's sections."""
    if len(names) <= 1:
        return _sections(frame)
    parts = ["## Across machines", ""]
    for (threads, dtype, suite, direction), rows in frame.groupby(["threads", "dtype", "suite", "direction"], sort=False):
        table, unit = machines_table(rows)
        parts += [f"### {suite}, {direction} ({dtype}, {threads} thread{'s' if threads > 1 else ''})", "",
                  f"Median times in {unit} (ratio to the best on that machine):", "", table.to_markdown(index=False), ""]
    for name in names:
        parts += [f"# {name}", "", _machine(frame[frame.machine == name]), ""]
        parts += _sections(frame[frame.machine == name], prefix=f"{name}: ")
    return parts


def _plots(frame: pd.DataFrame, names: list, path: Path) -> list[Path]:
    """The plots of each machine's rows, in plots/ (one machine) or plots/MACHINE/."""
    from convbench.bench.plots import write_plots

    images = []
    for name in names if len(names) > 1 else [None]:
        rows = frame if name is None else frame[frame.machine == name]
        images += write_plots(rows, path / "plots" if name is None else path / "plots" / _slug(name))
    return images


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name)) or "machine"
