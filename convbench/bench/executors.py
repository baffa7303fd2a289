"""Where a cell of a plan is measured: in this process, or in several worker processes, each a sample.

A *cell* is one window of the plan (``runner.windows``): consecutive groups (one problem, dtype
and thread count each, with the backends and directions still pending for it) whose entries
take turns together. ``measure_here`` measures a cell in the calling process and returns what a
run directory would have received: the process's session, its calibrations and its rows.

A process has a speed of its own (docs/methodology.md measures how much: where its buffers
landed, whether a thread pool left spinning slows the next call), which every turn of that
process shares. So with ``plan.processes`` above 1, ``Processes`` measures each cell in that
many worker processes, each taking its share of the turns and the budget. They take their
turns in rotation, one turn of every entry each, because the machine has states of its own that
last seconds (on a shared virtual machine, the two cores' joint speed halves for 5-20 s at a
time): measured one process after another, such a state fell on one process's whole share and
made it look like that process's speed. ``merge_rows`` makes one row of their rows, keeping the samples process by process: the
verdicts treat the process as the unit (``convbench.bench.stats``). The workers live as long as
the run.

The Dask cluster path (``convbench.bench.cluster``) sends ``measure_cell`` to its workers, which
measure a cell the same way on their machines.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING

from convbench.bench.child import Child
from convbench.bench.interleave import rotation, timing_fields
from convbench.bench.machine import ALLOCATOR_ENV
from convbench.bench.results import with_rates
from convbench.bench.runner import Plan, Runner, row_key, window_label, windows
from kernels.quiet import quiesce

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class Collector:
    """A run directory's writing methods, kept in memory: what a measuring process hands back."""

    calibrations: list[dict] = field(default_factory=list)
    measurements: list[dict] = field(default_factory=list)

    def start_session(self, metadata: dict) -> str:
        from convbench.bench.results import RunDirectory

        return RunDirectory.new_session_id()  # the record goes back from Runner.open_session

    def add_calibration(self, session: str, record: dict) -> dict:
        self.calibrations.append({"session": session, **record})
        return record

    def append(self, row: dict) -> None:
        self.measurements.append(row)

    def rows(self) -> list[dict]:
        return []


_opened: dict[str, tuple] = {}  # in a measuring process: plan's thread counts -> (session record, peaks)
_cell: dict = {}  # in a measuring process: the cell it is measuring part by part (``start_cell``)


def start_cell(plan: Plan, cell: list[tuple], problems: dict, **session: object) -> None:
    """Check and warm up every backend of one cell (a window: [(group, wanted)]) in this process,
    ready for ``cell_turns``; then this process waits until its thread pools sleep. A process
    opens one session (the machine's metadata and peaks, ``session`` among them) the first time
    it sees a plan's thread counts, and names it in every row it measures after."""
    sink = Collector()
    runner = Runner(plan, sink)
    key = json.dumps(plan.threads)
    if key in _opened:
        record, runner.peaks = _opened[key]
        runner.session = record["session"]
    else:
        record = runner.open_session(**session)
        _opened[key] = (record, runner.peaks)
    _cell.update(runner=runner, sink=sink, record=record, window=cell,
                 entries=runner.prepare(cell, problems))
    quiesce()  # the next process prepares (auto tunes there) without this one's pools spinning


def cell_turns(which: range | None = None) -> None:
    """The started cell's turns ``which`` (default: all); then this process waits until its thread
    pools sleep, so that they do not spin into the next process's turn."""
    _cell["runner"].take_turns(_cell["entries"], _cell["window"], which)
    quiesce()


def end_cell() -> dict:
    """The started cell's rows: its session's record (under ``sessions``, a list of one), its
    calibrations and its rows."""
    runner, sink = _cell["runner"], _cell["sink"]
    runner.finish(_cell["entries"], _cell["window"])
    result = {"sessions": [_cell["record"]], "calibrations": sink.calibrations, "rows": sink.measurements}
    _cell.clear()
    return result


def measure_here(plan: Plan, cell: list[tuple], problems: dict, **session: object) -> dict:
    """Measure one cell in this process, all its turns at once; returns what ``end_cell`` does."""
    start_cell(plan, cell, problems, **session)
    cell_turns()
    return end_cell()


class Processes:
    """``count`` worker processes (``convbench.bench.child``) that measure every cell together."""

    def __init__(self, count: int):
        self.children = [Child(env=ALLOCATOR_ENV) for _ in range(count)]
        self.cells = 0

    def measure(self, plan: Plan, cell: list[tuple], problems: dict) -> dict:
        """The cell measured by every worker, turn by turn: each worker takes one turn of every
        entry, then the next worker, the first one rotating from turn to turn (and the order
        from cell to cell), so that a state of the machine lasting seconds falls on every
        process's turns alike rather than on one process's share. One result."""
        start, self.cells = self.cells % len(self.children), self.cells + 1
        order = self.children[start:] + self.children[:start]
        for child in order:
            child.call(start_cell, plan, cell, problems)
        for turn in range(plan.process_turns()):
            for index in rotation(len(order), turn):
                order[index].call(cell_turns, range(turn, turn + 1))
        return merge([child.call(end_cell) for child in order])

    def close(self) -> None:
        for child in self.children:
            child.kill()


def execute(runner: Runner) -> None:
    """Measure ``runner``'s pending rows: in this process when its plan asks for one process,
    else cell by cell in ``plan.processes`` worker processes, each cell's rows written as it ends."""
    plan = runner.plan
    if plan.processes == 1:
        runner.execute()
        return
    groups = runner.groups()
    if not groups:
        return
    problems = dict(((s, p.name), p) for s, p in plan.problems())
    with processes(plan.processes) as pool:
        for cell in windows(groups, plan.budget, plan.window):
            runner.on_window(window_label(cell))
            runner.write(pool.measure(plan, cell, {g[:2]: problems[g[:2]] for g, _ in cell}))


@contextmanager
def processes(count: int) -> Iterator[Processes]:
    pool = Processes(count)
    try:
        yield pool
    finally:
        pool.close()


_pools: dict[int, Processes] = {}  # in a cluster worker: the measuring processes it keeps


def measure_cell(plan: Plan, cell: list[tuple], problems: dict) -> dict:
    """On a Dask worker: one cell measured as ``convbench run`` measures it on one machine (in
    ``plan.processes`` processes of this machine, or here when that is 1)."""
    from distributed import get_worker

    if plan.processes == 1:
        return measure_here(plan, cell, problems, worker=get_worker().address)
    if plan.processes not in _pools:  # started once per worker: setdefault would start a pool every cell
        _pools[plan.processes] = Processes(plan.processes)
    pool = _pools[plan.processes]
    result = pool.measure(plan, cell, problems)
    for record in result["sessions"]:
        record["worker"] = get_worker().address
    return result


def merge(results: list[dict]) -> dict:
    """One result of several processes' results of one cell: every session and calibration, and
    one row per measurement (``merge_rows``)."""
    by_key: dict[tuple, list[dict]] = {}
    for result in results:
        for row in result["rows"]:
            by_key.setdefault(row_key(row), []).append(row)
    return {"sessions": [s for r in results for s in r["sessions"]],
            "calibrations": [c for r in results for c in r["calibrations"]],
            "rows": [merge_rows(rows) for rows in by_key.values()]}


def merge_rows(rows: list[dict]) -> dict:
    """One measurement's row from the rows several processes made of it: their samples process by
    process, the statistics of them all, and the worst of their contention. A process that found
    the backend wrong, failing or too slow decides the row (the first such)."""
    sessions = [r["session"] for r in rows]
    for row in rows:
        if row["status"] != "ok":
            return {**row, "sessions": sessions}
    first = rows[0]
    merged = {**first, **timing_fields([p for r in rows for p in r["turn_medians_s"]],
                                       [p for r in rows for p in r["turn_fastest_s"]],
                                       [p for r in rows for p in r["turn_calls"]])}
    merged.update(sessions=sessions, contended=any(r["contended"] for r in rows),
                  others_cores=max(r["others_cores"] for r in rows), load1=max(r["load1"] for r in rows))
    for name in ("first_call_s", "compile_s", "peak_mem_bytes", "cpu_per_wall"):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            merged[name] = max(values) if name != "cpu_per_wall" else median(values)
    return with_rates(merged)
