"""``convbench report RUN``: Markdown tables and PNG plots of a run directory.

The tables follow ``torch.utils.benchmark.Compare``: backends as rows, problems as columns,
each cell the median time and its ratio to the best backend on that problem, then the winner
per problem. The summary gives each backend's geometric-mean speedup over the baseline (naive) and ratio
to the fastest (over the problems where both were measured), and its whole-model time (the sum
of median times weighted by how often each layer repeats) where every layer was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convbench.bench import backends
from convbench.bench.errors import InputError
from convbench.bench.formats import (
    CONTENDED_MARK,
    MARKS,
    MOSTLY,
    NOISY_MARK,
    banner,
    duration,
    in_unit,
    marks,
    mebibytes,
    number,
    percent,
    ratio,
    time_unit,
)
from convbench.bench.results import load_results

SECTION_ORDER = ("step", "forward+backward", "forward", "backward", "update")  # step, update: convbench step


def _geomean(values) -> float:
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0])
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


def _contenders(ok: pd.DataFrame) -> pd.DataFrame:
    """The rows that compete for "best" (a backend that picks others only repeats its pick), per
    problem: where no contender has a time (all skipped, say), the other rows stand in."""
    real = ok.backend.isin(backends.contenders(ok.backend))
    return ok[real | ~real.groupby(ok.problem).transform("any")]


def compare_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One suite x direction: backends as rows, problems as columns, 'median (x best)' cells, each
    column in the unit that suits its fastest time, named in its header ("conv1 (µs)"); noisy and
    contended cells are marked."""
    problems = list(dict.fromkeys(rows["problem"]))
    ok = rows[rows.status == "ok"]
    best = _contenders(ok).groupby("problem")["median_s"].min()
    units = {p: time_unit(ok.loc[ok.problem == p, "median_s"]) for p in problems}
    table = pd.DataFrame(index=backends.order(rows["backend"]), columns=problems, dtype=object)
    for _, r in rows.iterrows():
        if r.status == "ok":
            cell = f"{in_unit(r.median_s, units[r.problem])} ({ratio(r.median_s / best[r.problem])}){marks(r)}"
            table.loc[r.backend, r.problem] = f"**{cell}**" if r.median_s == best[r.problem] else cell
        else:
            table.loc[r.backend, r.problem] = r.status
    winners = _contenders(ok).loc[lambda d: d.groupby("problem")["median_s"].idxmin()]
    table.loc["winner"] = [winners.set_index("problem")["backend"].get(p, "-") for p in problems]
    return table.fillna("-").rename(columns={p: f"{p} ({units[p][0]})" for p in problems})


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
                ratio(_geomean(ok[baseline] / times)) if baseline and backend != baseline else "-"),
            "x fastest (geomean)": ratio(_geomean(times / best)),
            "wins": int((contenders.idxmin(axis=1) == backend).sum()),
            "model time (sum x repeat)": duration(float((times * repeat.reindex(times.index)).sum())) if complete else "-",
            "% of SGEMM peak (median)": percent(pct.median()) if len(pct) else "-",
            "largest extra memory": mebibytes(memory.max()) if len(memory) else "-",
        })
    table = pd.DataFrame(out).set_index("backend")
    if (rows.op == "train_step").all():  # whole training steps of different models do not add up
        table = table.drop(columns="model time (sum x repeat)")
    # a column with nothing in it (no baseline, no FLOPs, no memory: training steps) is left out
    return _without_empty_columns(table)


def _without_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the columns that hold only "-"."""
    return table.loc[:, [c for c in table.columns if not (table[c].astype(str) == "-").all()]]


def picks_table(rows: pd.DataFrame, picker: str) -> pd.DataFrame | None:
    """A picking backend's (auto's) pick per problem and its cost: its median over its pick's,
    and over the fastest of our contenders' (the yardstick left out) in the same run; each time
    with its row's marks (``formats.marks``), a ratio with the marks of both its times."""
    ok = rows[rows.status == "ok"]
    mine = ok[ok.backend == picker]
    shown = [_shown_pick(r) for r in mine.to_dict("records")]
    if len(ok.backend.unique()) < 2 or all(pick == "-" for pick, _ in shown):  # no pick recorded
        return None
    contenders = ok[ok.backend.isin(backends.ours(ok.backend.unique()))].set_index(["problem", "backend"])
    out = []
    for r, (shown_as, pick) in zip(mine.itertuples(), shown):
        others = contenders.loc[r.problem] if r.problem in contenders.index else None
        alone = others.loc[pick] if pick is not None and others is not None and pick in others.index else None
        best = others.loc[others.median_s.idxmin()] if others is not None and len(others) else None
        me = marks(r._asdict())
        out.append({
            "problem": r.problem, "pick": shown_as,
            picker: duration(r.median_s) + me,
            "pick alone": duration(alone.median_s) + marks(alone) if alone is not None else "-",
            f"{picker} / pick": ratio(r.median_s / alone.median_s) + _joint(me, alone) if alone is not None else "-",
            "fastest": best.name if best is not None else "-",
            f"{picker} / fastest": ratio(r.median_s / best.median_s) + _joint(me, best) if best is not None else "-",
        })
    return pd.DataFrame(out).set_index("problem")


def _shown_pick(row: dict) -> tuple[str, str | None]:
    """(what the pick column shows, the backend whose own row is the pick's) of a picking
    backend's row: a suite row's ``pick``; a training step's ``picks`` by layer (``0:numba
    2:im2col``, processes that differ joined by ``|``), whose own row is the one backend bound to
    every layer, if there is one. ("-", None) where nothing was recorded."""
    pick, picks = row.get("pick"), row.get("picks")
    if isinstance(pick, str):
        return pick, pick
    if not isinstance(picks, str):
        return "-", None
    bound = {layer.split(":", 1)[-1] for layer in picks.replace("|", " ").split()}
    return picks, bound.pop() if len(bound) == 1 else None


PICKS_CONTENDED = (
    f"A ratio marked `{CONTENDED_MARK}` compares times taken while other processes held cores this run asked for. "
    "A kernel on more threads than there are free cores waits for its last thread until the scheduler "
    "gives it a core (milliseconds: 8 and 16 ms on a 2-core AMD EPYC beside one busy process, for calls "
    "of 20-200 µs), so its calls are either as fast as on a quiet machine or slower by a scheduler slice, "
    "and a median falls on either side by chance: the picker and the backend it calls can then differ "
    "by 100x or more. Measure with `--threads` at most the free cores, or on a quiet machine.")


def _joint(mine: str, other) -> str:
    """The marks of a ratio: those of either of its two times."""
    theirs = marks(other)
    return "".join(m for m in (NOISY_MARK, CONTENDED_MARK) if m in mine or m in theirs)


def _machine(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    lines = [f"- CPU: {first.get('cpu')} ({first.get('cores')} cores), {first.get('os')}",
             f"- BLAS: {first.get('blas')}; numpy {first.get('numpy_version')}, scipy {first.get('scipy_version')}, "
             f"numba {first.get('numba_version')}, Python {first.get('python_version')}",
             f"- convbench commit {first.get('git_commit')}; started {first.get('started')}"]
    for threads, group in frame.dropna(subset=["peak_gflops"]).groupby("threads"):
        lines.append(f"- {threads} thread(s): SGEMM peak {number(group.peak_gflops.max())} GFLOP/s, copy bandwidth "
                     f"{number(group.bandwidth_gbs.max())} GB/s (the best of the sessions' probes: a probe taken while "
                     "the host shares the cores reads low)")
    return "\n".join(lines)


def machines_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One suite x direction x dtype x threads on several machines: (problem, backend) as rows,
    machines as columns, each cell the median and its ratio to the best backend on that machine,
    and each problem's winner per machine (asv's results of several machines side by side)."""
    from convbench.bench.compare import machines

    ok = rows[rows.status == "ok"]
    unit = time_unit(ok["median_s"])
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
                cell = f"{in_unit(t, unit)} ({ratio(t / best[m])}){marks(hit.iloc[0])}"
                record[m] = f"**{cell}**" if t == best[m] else cell
            records.append(record)
        records.append({"problem": problem, "backend": "winner",
                        **{m: c.loc[c.median_s.idxmin(), "backend"] if len(c) else "-" for m, c in contenders.items()}})
    return pd.DataFrame(records), unit[0]


def _machines_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per machine: what it is and how fast it measured itself."""
    out = []
    for name, rows in frame.groupby("machine", sort=True):
        first = rows.iloc[0]
        peaks = rows.dropna(subset=["peak_gflops"]).groupby("threads").peak_gflops.max()
        out.append({"machine": name, "CPU": first.get("cpu"), "cores": first.get("cores"), "BLAS": first.get("blas"),
                    "SGEMM peak (GFLOP/s)": ", ".join(f"{number(p)} at {t}t" for t, p in peaks.items()) or "-",
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
            parts += [f"### {direction}", "", *banner(rows), summary_table(rows).to_markdown(disable_numparse=True), "",
                      "Median times, each column in the unit its header names (ratio to the best):", "",
                      compare_table(rows).to_markdown(disable_numparse=True), ""]
            for picker in backends.pickers(rows.backend):
                picks = picks_table(rows, picker)
                if picks is not None:
                    parts += [f"{picker}'s picks (timed on first sight) and its overhead, in this run:", "",
                              picks.to_markdown(disable_numparse=True), ""]
                    if picks.map(lambda cell: CONTENDED_MARK in str(cell)).to_numpy().any():
                        parts += [PICKS_CONTENDED, ""]
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


def _chosen(frame: pd.DataFrame, columns: list[str] | None, sort: list[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """The rows in ``sort``'s order ("-median" for descending; as measured without it), every column
    they name present, and the names of the columns to show."""
    shown = _names("--columns", columns, DEFAULT_COLUMNS)
    keys = _names("--sort", sort, ())
    descending = [k.strip().startswith("-") for k in (sort or [])]
    rows = frame.assign(**{MEASUREMENT_COLUMNS[n]: np.nan for n in {*shown, *keys} if MEASUREMENT_COLUMNS[n] not in frame})
    if keys:
        rows = rows.sort_values([MEASUREMENT_COLUMNS[k] for k in keys], ascending=[not d for d in descending],
                                kind="stable", na_position="last")
    return rows, shown


def measurements_table(frame: pd.DataFrame, columns: list[str] | None = None,
                       sort: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Every measurement as a row (pytest-benchmark's and asv's long table): ``columns`` to show,
    ``sort`` keys ("-median" for descending), times in one unit; returns (table, unit)."""
    rows, shown = _chosen(frame, columns, sort)
    unit = time_unit(rows.loc[rows.status == "ok", "median_s"])
    show = {"gflops": number, "peak%": percent, "memory": mebibytes, **{t: lambda v: in_unit(v, unit) for t in TIMES}}
    table = pd.DataFrame(index=range(len(rows)))
    for name in shown:
        values = rows[MEASUREMENT_COLUMNS[name]].to_numpy()
        if name in show:
            table[f"{name} ({unit[0]})" if name in TIMES else name] = [show[name](v) for v in values]
        else:
            table[name] = ["-" if v is None or (isinstance(v, float) and v != v) else v for v in values]
    if not columns:  # by default, a column with nothing in it (GFLOP/s of training steps) is left out
        table = _without_empty_columns(table)
    return table, unit[0]


def raw_measurements(frame: pd.DataFrame, columns: list[str] | None = None,
                     sort: list[str] | None = None) -> pd.DataFrame:
    """The measurements table with its numbers as measured, for other tools: times in seconds
    (``median_s``), GFLOP/s, percent of the peak, bytes."""
    rows, shown = _chosen(frame, columns, sort)
    named = {"peak%": "pct_of_peak", "memory": "peak_mem_bytes", **{t: MEASUREMENT_COLUMNS[t] for t in TIMES}}
    return pd.DataFrame({named.get(n, n): rows[MEASUREMENT_COLUMNS[n]].to_numpy() for n in shown})


TABLE_STYLES = {"markdown": "pipe", "plain": "simple"}  # tabulate's names; and "csv"


@dataclass
class Report:
    """What ``write_report`` wrote (report.md first, then the plots), and the rows it read."""

    files: list[Path]
    frame: pd.DataFrame
    columns: list[str] | None = None
    sort: list[str] | None = None

    def table(self, fmt: str = "markdown") -> str:
        """The report's summary for a terminal, as pytest-benchmark prints its table: the summary
        table of each suite, direction, dtype and thread count (markdown or plain text), or with
        ``--columns``/``--sort`` the measurements they choose; as csv, those measurements with their
        numbers as measured (times in seconds), for other tools."""
        if fmt == "csv":
            return raw_measurements(self.frame, self.columns, self.sort).to_csv(index=False)
        if fmt not in TABLE_STYLES:
            raise ValueError(f"a report's table is markdown, plain or csv; got {fmt!r}")
        style = TABLE_STYLES[fmt]
        if self.columns or self.sort:
            return measurements_table(self.frame, self.columns, self.sort)[0].to_markdown(index=False, tablefmt=style, disable_numparse=True) + "\n"
        parts = []
        for machine, frame in _by_machine(self.frame):
            for (threads, dtype, suite, direction), rows in _summaries(frame):
                parts += [f"{machine + ': ' if machine else ''}{suite}, {direction} ({dtype}, {threads} "
                          f"thread{'s' if threads > 1 else ''})", "", *banner(rows),
                          summary_table(rows).to_markdown(tablefmt=style, disable_numparse=True), ""]
        return "\n".join(parts)


def _by_machine(frame: pd.DataFrame):
    """(machine, its rows) for each machine of a frame of several; ("", frame) for one machine's."""
    from convbench.bench.compare import machines

    names = machines(frame)
    return [(str(m), frame[frame.machine == m]) for m in names] if len(names) > 1 else [("", frame)]


def _summaries(frame: pd.DataFrame):
    """((threads, dtype, suite, direction), rows) in the report's order of sections."""
    for (threads, dtype, suite), suite_rows in frame.groupby(["threads", "dtype", "suite"], sort=False):
        for direction in SECTION_ORDER:
            rows = suite_rows[suite_rows.direction == direction]
            if len(rows):
                yield (threads, dtype, suite, direction), rows


def write_report(paths: str | Path | list, plots: bool = True, out: str | Path | None = None,
                 columns: list[str] | None = None, sort: list[str] | None = None) -> Report:
    """Write OUT/report.md (and OUT/plots/*.png); return what was written (``Report``).

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
             f"columns: {', '.join(MEASUREMENT_COLUMNS)}).", "", every.to_markdown(index=False, disable_numparse=True), ""]
    written = _plots(frame, names, path) if plots else []
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(path).as_posix()})" for p in written] + [""]
    report = path / "report.md"
    report.write_text("\n".join(parts))
    return Report([report, *written], frame, columns, sort)


def _preamble(frame: pd.DataFrame, names: list) -> list[str]:
    """The machine (or machines), the statuses, how to read a cell, and the flagged share."""
    statuses = frame.status.value_counts()
    parts = [_machine(frame), ""] if len(names) <= 1 else [
        f"{len(names)} machines; each one's tables come from its own rows, the backends of each problem "
        "measured in turns on that machine.", "", _machines_summary(frame).to_markdown(disable_numparse=True), ""]
    parts += ["Statuses: " + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ".",
              "Cells: median time, in the unit of the column's header (ratio to the best backend on that problem); **bold** "
              "is the best. Medians and ratios come from one run on one machine, the backends of each "
              "problem measured in turns. " + MARKS, ""]
    parts += banner(frame, "the run's measurements")
    for flag in ("noisy", "contended"):
        marked = int(frame[flag].eq(True).sum()) if flag in frame else 0
        if 0 < marked <= MOSTLY * len(frame):
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
                  f"Median times in {unit} (ratio to the best on that machine):", "", table.to_markdown(index=False, disable_numparse=True), ""]
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
