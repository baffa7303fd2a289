"""Run a plan: every problem x backend x dtype x thread count x direction, one row each.

The plan's (problem, dtype, threads) groups are measured in windows of about a minute of
timing budget (``windows``). For each window the runner

1. measures the machine's calibration workload (``convbench.bench.machine.calibrate``), as it
   does again before every turn of step 3;
2. for each backend, estimates the time of one call from a cut-down probe (``Problem.probe``)
   and records the directions that would take longer than ``max_time`` as ``skipped``, with the
   estimate; runs forward (and backward) once on the real problem and compares every output
   with ``kernels.reference``; a mismatch is recorded as ``wrong`` and not timed. This first call
   is also the warm-up: numba compiles here, and its extra time is recorded as ``compile_s``;
3. times every (problem, backend, direction) of the window in ``turns`` rotating turns
   (``convbench.bench.interleave``), keeping one sample per turn and the CPU time that other
   processes took meanwhile (a row is ``contended`` when they held the cores it asked for);
4. measures one more call's peak memory and, for backends with phases, one instrumented call's
   phase breakdown, and appends the window's rows.

A backend that raises is recorded as ``error`` with its message and the run goes on.
"""

from __future__ import annotations

import math
import os

import re
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import psutil

import kernels
from convbench.bench import limits, stats, timing
from convbench.bench.abworker import call_times, fresh_inputs, max_relative_error
from convbench.bench.interleave import TURNS, Entry, interleave
from convbench.bench.machine import calibrate, steady_allocator
from convbench.bench.problems import DIRECTIONS, OPS, Problem
from convbench.bench.results import RunDirectory, machine_metadata, machine_name, make_row
from convbench.bench.suites import read_suite
from kernels import phases
from kernels.quiet import quiesce

TOLERANCE = {"float32": 1e-4, "float64": 1e-10}  # relative to the largest reference value
DTYPES = tuple(TOLERANCE)
SLOW_EXTRAS = 1.0  # seconds: calls slower than this get no extra memory / phase call
MEMORY_SHARE = 0.5  # of the machine's memory, at most, that one problem's estimated working set may take
MAX_TIME = 10.0  # seconds: a call estimated to take longer is skipped (--max-time); `step` skips a step so
WINDOW = 60.0  # seconds of timing budget whose problems take turns together (see windows())
PROCESSES = 3  # processes that measure each row by default (see convbench.bench.executors), from the A/A figures
PROCESSES_ENV = "CONVBENCH_PROCESSES"  # overrides that default (the test suite sets 1)


def default_processes() -> int:
    value = os.environ.get(PROCESSES_ENV)
    if value is None:
        return PROCESSES
    if not value.strip().isdigit() or not 1 <= int(value) <= limits.MAX_PROCESSES:
        raise ValueError(f"${PROCESSES_ENV} is {value!r}; expected a whole number from 1 to {limits.MAX_PROCESSES}")
    return int(value)


def all_backends() -> list[str]:
    """Every backend, plus the outside yardsticks (PyTorch) that are installed here."""
    reasons = kernels.available(include_yardsticks=True)
    return [*kernels.names(), *(y for y in kernels.yardsticks() if reasons[y] is None)]


def known_backends() -> list[str]:
    """Every name a plan may ask for: the registered backends and the outside yardsticks."""
    return kernels.names() + kernels.yardsticks()


def check_backends(backends: list[str]) -> list[str]:
    """``backends`` unless one is not a registered backend or yardstick, or one is named twice
    (ValueError naming it): the rule of every plan, ``run``'s, ``step``'s and ``ab``'s."""
    return limits.distinct("backends", backends, known_backends())


@dataclass
class Plan:
    """What to measure. Serialised to plan.json so ``--resume`` can finish it."""

    suites: list[str]
    backends: list[str] = field(default_factory=lambda: all_backends())
    ops: list[str] = field(default_factory=lambda: list(OPS))
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS))
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    threads: list[int] = field(default_factory=lambda: [timing.usable_cores()])
    match: str | None = None
    batch: int | None = None
    budget: float = 1.0
    rounds: int | None = None
    turns: int = TURNS
    window: float = WINDOW
    max_time: float = MAX_TIME
    seed: int = 0
    processes: int = field(default_factory=default_processes)
    strict: bool = False  # refuse a benchdnn file that holds what convbench cannot run (else: skip, counted)
    # "suite/name" -> the problem as first resolved (``Problem.identity``): a suite file edited
    # between a run and its --resume is refused instead of mixing two shapes under one name.
    resolved: dict[str, str] | None = None

    def __post_init__(self):
        self.ops = limits.distinct("ops", self.ops, OPS)
        self.directions = limits.distinct("directions", self.directions, DIRECTIONS)
        self.dtypes = limits.distinct("dtypes", self.dtypes, DTYPES)
        self.suites = limits.distinct("suite", self.suites)
        check_backends(self.backends)
        if self.match is not None:
            try:
                re.compile(self.match)
            except (re.error, TypeError) as exc:
                raise ValueError(f"match is not a regular expression ({exc}): {self.match!r}") from None
        for name in ("budget", "max_time", "window"):
            limits.seconds(name.replace("_", "-"), getattr(self, name))
        timing.check_threads(self.threads)
        limits.whole("turns", self.turns, 1, limits.MAX_TURNS)
        limits.whole("processes", self.processes, 1, limits.MAX_PROCESSES)
        if self.rounds is not None:
            limits.whole("rounds", self.rounds, 1, limits.MAX_ROUNDS)
        if self.batch is not None:
            limits.whole("batch", self.batch)

    def process_turns(self) -> int:
        """Turns each measuring process takes of every row: its share of the plan's."""
        return math.ceil((self.rounds or self.turns) / self.processes)

    def process_least(self) -> int:
        """Turns each measuring process takes of a row at least, however slow its calls: its share
        of ``stats.MIN_SAMPLES``."""
        return math.ceil(stats.MIN_SAMPLES / self.processes)

    def problems(self) -> list[tuple[str, Problem]]:
        """(suite, problem) pairs selected by ops and match, in suite order; read once (a warning
        for each kind of line a benchdnn file holds that convbench cannot run)."""
        if getattr(self, "_chosen", None) is None:
            self._chosen = self._choose()
        return self._chosen

    def _choose(self) -> list[tuple[str, Problem]]:
        chosen = []
        for suite in self.suites:
            reading = read_suite(suite, self.batch, self.strict)
            for line in reading.lines():
                warnings.warn(f"{suite}: {line}", stacklevel=4)
            for problem in reading.problems:
                if problem.op in self.ops and (self.match is None or re.search(self.match, problem.name)):
                    chosen.append((suite, problem))
        if not chosen:
            raise ValueError(f"no problem in {', '.join(self.suites)} matches ops {self.ops} and --match {self.match!r}")
        chosen = self._wanted(chosen)
        if self.resolved is not None:
            now = {f"{suite}/{p.name}": p.identity() for suite, p in chosen}
            changed = sorted(set(now.items()) ^ set(self.resolved.items()))
            if changed:
                key = changed[0][0]
                raise ValueError(f"the suites changed since this run was planned: {key} was "
                                 f"{self.resolved.get(key, 'absent')!r} and is now {now.get(key, 'absent')!r}; "
                                 "restore the suite file or start a new run")
        return chosen

    def _wanted(self, chosen: list[tuple[str, Problem]]) -> list[tuple[str, Problem]]:
        """``chosen`` less the problems that ask only for directions or dtypes outside the plan
        (a benchdnn ``--dt=f64`` line in a float32 run), each left out with a warning, none in
        silence; ValueError when none is left, or when a problem needs more memory than the
        machine has (before anything is allocated)."""
        total = psutil.virtual_memory().total
        kept = []
        for suite, problem in chosen:
            need = problem.working_bytes(8)  # the float64 reference checks every backend first
            if need > total * MEMORY_SHARE:
                raise ValueError(f"{suite}/{problem.name} needs at least {need / 2**30:,.1f} GiB of memory per call "
                                 f"(the float64 reference's), more than {MEMORY_SHARE:.0%} of this machine's "
                                 f"{total / 2**30:,.1f} GiB: the backends' temporaries would not fit")
            if any(problem.wants(d, t) for d in self.directions for t in self.dtypes):
                kept.append((suite, problem))
        left_out = [f"{s}/{p.name}" for s, p in chosen if (s, p) not in kept]
        if not kept:
            raise ValueError(f"every problem chosen ({', '.join(left_out[:3])}{' ...' if len(left_out) > 3 else ''}) "
                             f"asks only for directions or dtypes outside --directions {','.join(self.directions)} "
                             f"--dtype {','.join(self.dtypes)}")
        if left_out:
            warnings.warn(f"{len(left_out)} problem(s) ask only for directions or dtypes outside this run and are "
                          f"left out: {', '.join(left_out[:5])}{' ...' if len(left_out) > 5 else ''}", stacklevel=3)
        return kept

    def resolve(self) -> Plan:
        """This plan with its problems resolved now and remembered (see ``resolved``)."""
        return replace(self, resolved={f"{suite}/{p.name}": p.identity() for suite, p in self.problems()})

    def keys(self) -> Iterator[tuple]:
        for threads in self.threads:
            for dtype in self.dtypes:
                for suite, problem in self.problems():
                    for backend in self.backends:
                        for direction in self.directions:
                            if problem.wants(direction, dtype):
                                yield (suite, problem.name, backend, dtype, threads, direction)


def windows(groups: dict[tuple, dict[str, list[str]]], budget: float, seconds: float) -> list[list[tuple]]:
    """Consecutive groups (problem, dtype, threads) whose entries take turns together: as many
    as fill about ``seconds`` of timing budget, all at one thread count. Measuring a window's
    problems in turns spreads each row's turns over the whole window (asv's
    ``--interleave-rounds``), so a state of the machine that lasts a few seconds falls on many
    problems a little rather than on one problem wholly; a kill loses at most the window."""
    result: list[list[tuple]] = []
    filled = 0.0
    for key, wanted in groups.items():
        cost = budget * sum(len(directions) for directions in wanted.values())
        if not result or filled + cost > seconds or key[3] != window_threads(result[-1]):
            result.append([])
            filled = 0.0
        result[-1].append((key, wanted))
        filled += cost
    return result


def window_threads(window: list[tuple]) -> int:
    """The one thread count of a window's groups."""
    (_, _, _, threads), _ = window[0]
    return threads


def window_label(window: list[tuple]) -> str:
    """"resnet18/layer1_conv..layer2_conv, float32, 2 threads": what a window measures."""
    (suite, first, dtype, threads), _ = window[0]
    last = window[-1][0][1]
    return f"{suite}/{first}{'..' + last if last != first else ''}, {dtype}, {threads} thread{'s' * (threads > 1)}"


def row_key(row: dict) -> tuple:
    return (row["suite"], row["problem"], row["backend"], row["dtype"], row["threads"], row["direction"])


def _call(problem: Problem, be, arrays: dict, ctx, direction: str) -> Callable[[], object]:
    """One direction's call on ``be`` (the backward on ``ctx``, which ``be``'s forward made)."""
    if direction == "forward":
        return lambda: problem.forward(be, arrays)
    if direction == "backward":
        return lambda: problem.backward(be, arrays, ctx)
    return lambda: problem.backward(be, arrays, problem.forward(be, arrays)[1])


def _bound(problem: Problem, backend: str, be, arrays: dict, directions: list[str]) -> dict:
    """The backend each direction's calls run on: ``be`` itself, or, where ``be`` picks (auto),
    its pick, bound once (``kernels.auto.bind``), so that the row times the pick's own calls as a
    bound layer makes them, with no dispatch; a forward row, the fastest forward pass."""
    if not kernels.traits(backend).picks:
        return dict.fromkeys(directions, be)
    forward = lambda b: problem.forward(b, arrays)  # noqa: E731
    timed = {d: "forward" if d == "forward" else "forward+backward" for d in directions}
    picks = {t: be.bind(forward, t) for t in set(timed.values())}  # a bind makes a forward call: once each
    return {d: picks[t] for d, t in timed.items()}


@dataclass
class _Contender:
    """One backend made ready for one problem: its calls, verified, warmed up, and what its rows share."""

    backend: str
    bound: dict  # by direction, the backend its calls run on (``_bound``)
    problem: Problem
    arrays: dict
    base: dict
    extras: dict
    calls: dict
    first: dict
    estimates: dict
    error: float

    def slice(self, direction: str, seconds: float, exact: bool) -> list[float]:
        """One turn's calls. Unless a forward call is too slow to repeat, they run on fresh copies
        of the inputs at random offsets (``abworker.fresh_inputs``; and a fresh forward pass for
        the backward)."""
        fn, be = self.calls[direction], self.bound[direction]
        if self.first["forward"] < seconds / 4:
            arrays = fresh_inputs(self.arrays)
            ctx = self.problem.forward(be, arrays)[1] if direction == "backward" else None
            fn = _call(self.problem, be, arrays, ctx, direction)
        return call_times(fn, seconds, exact)


class Runner:
    """Executes a Plan into a RunDirectory, skipping measurements it already holds.

    Work comes in windows of groups (``windows``); a group is one problem, dtype and thread
    count, with every backend and direction still pending for it. Each backend is checked and
    warmed up first; then all of the window's entries take turns (``convbench.bench.interleave``),
    and the machine's calibration workload is measured before every turn. A window's rows are
    appended when it ends.
    """

    def __init__(self, plan: Plan, run: RunDirectory, on_row: Callable[[dict], None] | None = None,
                 on_window: Callable[[str], None] | None = None):
        self.plan, self.run, self.on_row = plan, run, on_row or (lambda row: None)
        self.on_window = on_window or (lambda label: None)  # what is measured now, for a progress bar
        self._reference: tuple = (None, None)

    def pending(self) -> list[tuple]:
        done = {row_key(r) for r in self.run.rows()}
        return [k for k in self.plan.keys() if k not in done]

    def groups(self, pending: set[tuple] | None = None) -> dict[tuple, dict[str, list[str]]]:
        """The pending measurements (default: all not yet in the run) as groups, in plan order:
        (suite, problem, dtype, threads) -> backend -> directions. A group is the unit of work:
        its backends take turns on one machine, so their ratios are side by side."""
        pending = set(self.pending()) if pending is None else pending
        groups: dict[tuple, dict[str, list[str]]] = {}
        for key in self.plan.keys():
            if key in pending:
                suite, name, backend, dtype, threads, direction = key
                groups.setdefault((suite, name, dtype, threads), {}).setdefault(backend, []).append(direction)
        return groups

    def execute(self) -> None:
        """Measure every pending row in this process (``executors.execute`` spreads them over
        ``plan.processes`` worker processes)."""
        groups = self.groups()
        if not groups:
            return
        self.open_session()
        self.measure(groups)
        for threads in self.plan.threads:
            self._calibrate(threads)

    def write(self, result: dict) -> None:
        """Write a cell's result measured elsewhere (``executors``): its sessions not yet in the
        run, its calibrations and its rows not yet in the run (each once, whatever a cluster did)."""
        known = {s["session"] for s in self.run.sessions()}
        for session in result["sessions"]:
            if session["session"] not in known:
                self.run.write_session(session)
        for record in result["calibrations"]:
            self.run.add_calibration(record["session"], {k: v for k, v in record.items() if k != "session"})
        done = {row_key(r) for r in self.run.rows()}
        for row in result["rows"]:
            if row_key(row) not in done:
                self.run.append(row)
                done.add(row_key(row))
                self.on_row(row)

    def open_session(self, **extra) -> dict:
        """Load the backends, measure the machine's peaks on the plan's thread counts and start a
        session (the machine's metadata, ``extra`` among it); returns the session's record."""
        for backend in self.plan.backends:  # import now (torch, numba) so thread limits reach them
            try:
                kernels.get(backend)
            except kernels.BackendUnavailable:
                pass  # recorded as unavailable, cell by cell
        metadata = {**machine_metadata(), "allocator": steady_allocator(), **extra}
        self.peaks = {threads: timing.peaks(threads) for threads in self.plan.threads}
        metadata["peaks"] = {t: {"sgemm_gflops": g, "copy_gbs": b} for t, (g, b) in self.peaks.items()}
        self.session = self.run.start_session(metadata)
        return {"session": self.session, **metadata}

    def measure(self, groups: dict[tuple, dict[str, list[str]]], problems: dict | None = None) -> None:
        """Measure ``groups`` (see ``groups``) in windows, in this process's open session.
        ``problems``: (suite, name) -> Problem, as resolved by whoever planned (default: the plan's)."""
        problems = problems or dict(((s, p.name), p) for s, p in self.plan.problems())
        for window in windows(groups, self.plan.budget, self.plan.window):
            self.on_window(window_label(window))
            entries = self.prepare(window, problems)
            self.take_turns(entries, window)
            self.finish(entries, window)

    def prepare(self, window: list[tuple], problems: dict) -> list[Entry]:
        """Calibrate, then check and warm up every backend of ``window``: one entry per backend and
        direction, ready to take turns (steps 1 and 2 of the module's docstring)."""
        threads = window_threads(window)
        calibration, here = self._calibrate(threads), machine_name()
        contenders = []
        with timing.threads(threads):
            for (suite, name, dtype, _), wanted in window:
                problem = problems[suite, name]
                for backend, directions in wanted.items():
                    base = {"suite": suite, **problem.record(), "descriptor": problem.descriptor(),
                            "backend": backend, "dtype": dtype, "threads": threads, "machine": here,
                            "peak_gflops": self.peaks[threads][0], "bandwidth_gbs": self.peaks[threads][1],
                            "calibration_s": calibration["index_s"]}
                    contender = self._prepare(problem, base, directions)
                    if contender is not None:
                        contenders.append(contender)
        return [Entry((c, d), lambda seconds, exact, c=c, d=d: c.slice(d, seconds, exact))
                for c in contenders for d in c.calls]

    def take_turns(self, entries: list[Entry], window: list[tuple], which: range | None = None) -> None:
        """Every entry's directions take turns ``which`` (default: all of ``Plan.process_turns``; step 3)."""
        threads = window_threads(window)
        with timing.threads(threads):  # each process measures its share of every row
            interleave(entries, self.plan.budget / self.plan.processes, self.plan.process_turns(),
                       exact=self.plan.rounds is not None, between=lambda: self._calibrate(threads), settle=quiesce,
                       least=self.plan.process_least(), which=which)

    def finish(self, entries: list[Entry], window: list[tuple]) -> None:
        """Each entry's extra calls and its row (step 4)."""
        threads = window_threads(window)
        with timing.threads(threads):
            for entry in entries:
                self._finish(entry, threads)

    def _calibrate(self, threads: int) -> dict:
        return self.run.add_calibration(self.session, calibrate(threads))

    def _emit(self, base: dict, direction: str, status: str, **fields) -> None:
        row = make_row(self.session, {**base, "direction": direction}, status, **fields)
        self.run.append(row)
        self.on_row(row)

    def _reference_outputs(self, problem: Problem, dtype: str, arrays: dict) -> tuple:
        """(y, grads) of kernels.reference, kept for the latest problem only: groups come problem
        by problem, so every backend of a problem shares one reference computation."""
        if self._reference[0] != (problem, dtype):
            as64 = {k: v.astype(np.float64) for k, v in arrays.items()}
            y, ctx = problem.forward(kernels.reference, as64)
            self._reference = ((problem, dtype), (y, problem.backward(kernels.reference, as64, ctx)))
        return self._reference[1]

    def _prepare(self, problem: Problem, base: dict, directions: list[str]) -> _Contender | None:
        """Probe, check against the reference and warm up one backend; rows that will not be timed
        (unavailable, skipped, wrong, error) are written here."""
        dtype = base["dtype"]
        itemsize = np.dtype(dtype).itemsize
        extras = {d: {"flops": problem.flops(d), "intensity": problem.flops(d) / problem.bytes_moved(d, itemsize)}
                  for d in directions}
        try:
            be = kernels.get(base["backend"])
        except kernels.BackendUnavailable as exc:
            for d in directions:
                self._emit(base, d, "unavailable", reason=str(exc), **extras[d])
            return None
        stage, runnable = "probe", list(directions)
        try:
            estimates = estimate_seconds(be, problem, dtype, directions, self.plan.seed)
            too_slow = [d for d in directions if estimates[d] > self.plan.max_time]
            for d in too_slow:
                self._emit(base, d, "skipped", estimate_s=estimates[d], **extras[d], reason=(
                    f"estimated {estimates[d]:.1f} s per call from a cut-down probe; "
                    f"over the {self.plan.max_time:g} s limit (--max-time)"))
            runnable = [d for d in directions if d not in too_slow]
            if not runnable:
                return None
            stage = "check"
            arrays = problem.inputs(dtype, self.plan.seed)
            first_forward, (y, ctx) = timing.timed(lambda: problem.forward(be, arrays))
            needs_backward = any(d != "forward" for d in runnable)
            first_backward, grads = (timing.timed(lambda: problem.backward(be, arrays, ctx))
                                     if needs_backward else (0.0, ()))
            y_ref, grads_ref = self._reference_outputs(problem, dtype, arrays)
            error = max_relative_error((y, *grads), (y_ref, *grads_ref[: len(grads)]))
            stage = "bind"
            bound = _bound(problem, base["backend"], be, arrays, runnable)
            if bound.get("forward", be) is not be and bound["forward"].name != ctx.backend:  # a pick of its own
                error = max(error, max_relative_error(problem.forward(bound["forward"], arrays)[:1], (y_ref,)))
            if not error <= TOLERANCE[dtype]:  # NaN counts as wrong
                for d in runnable:
                    self._emit(base, d, "wrong", max_rel_err=error, **extras[d], reason=(
                        f"max relative error {error:.3g} against kernels.reference; tolerance {TOLERANCE[dtype]:g}"))
                return None
        except Exception as exc:  # isolate the failure: record it and go on with the next backend
            for d in runnable:
                self._emit(base, d, "error", reason=f"{type(exc).__name__} in {stage}: {exc}",
                           traceback=traceback.format_exc(limit=-3), **extras[d])
            return None
        first = {"forward": first_forward, "backward": first_backward,
                 "forward+backward": first_forward + first_backward}
        return _Contender(base["backend"], bound, problem, arrays, base, {d: extras[d] for d in runnable},
                          {d: _call(problem, bound[d], arrays, ctx, d) for d in runnable}, first, estimates, error)

    def _finish(self, entry: Entry, threads: int) -> None:
        c, d = entry.key
        if entry.error is not None:
            exc = entry.error
            self._emit(c.base, d, "error", reason=f"{type(exc).__name__} in {d}: {exc}",
                       traceback="".join(traceback.format_exception(exc, limit=-3)), **c.extras[d])
            return
        measured = {
            **entry.summary(), **entry.meter.record(threads), "first_call_s": c.first[d],
            "compile_s": max(0.0, c.first[d] - stats.median(entry.samples)), "max_rel_err": c.error,
            "estimate_s": c.estimates[d],
        }
        try:
            traits = kernels.traits(c.base["backend"])
            if traits.picks:  # which backend it chose for this problem
                measured["pick"] = c.bound[d].name
            if measured["median_s"] < SLOW_EXTRAS:
                measured["peak_mem_bytes"] = timing.peak_memory(c.calls[d])
                if traits.phases:
                    with phases.record() as seconds:
                        c.calls[d]()
                    measured["phases"] = seconds or None
        except Exception as exc:  # the timing stands; the extras are recorded as missing
            measured["extras_error"] = f"{type(exc).__name__}: {exc}"
        self._emit(c.base, d, "ok", **measured, **c.extras[d])


PROBE_SECONDS = 0.2  # timed calls of one probe, after its warm-up, beyond which it is not called again


def _probe_seconds(be, small: Problem, dtype: str, directions: list[str], seed: int) -> dict:
    """The best of up to 3 calls of each direction on ``small`` after a warm-up (the first call may
    compile); a call slow enough that the timed ones pass ``PROBE_SECONDS`` is not repeated."""
    arrays = small.inputs(dtype, seed)
    forward_only = directions == ["forward"]
    best = {"forward": float("inf"), "backward": 0.0 if forward_only else float("inf")}
    spent = 0.0
    for attempt in range(4):
        t_forward, (_, ctx) = timing.timed(lambda: small.forward(be, arrays))
        t_backward = 0.0 if forward_only else timing.timed(lambda: small.backward(be, arrays, ctx))[0]
        if attempt:
            best = {"forward": min(best["forward"], t_forward), "backward": min(best["backward"], t_backward)}
            spent += t_forward + t_backward
            if spent > PROBE_SECONDS:
                break
    return best


def estimate_seconds(be, problem: Problem, dtype: str, directions: list[str], seed: int = 0) -> dict:
    """Seconds per call of each direction, extrapolated from two cut-down probes.

    Time is fitted as fixed + per_pixel * output pixels from probes with 8x8 and 16x16
    outputs, so a backend's fixed per-call cost (numba's dispatch, a BLAS call) is not
    multiplied by the size ratio, and naive's per-pixel loop cost is. Where both probes are the
    same problem (one image's output fits in 8x8), it is called once; where that is the problem
    itself, its own calls are the estimate (a small output is no promise of a fast call: naive
    takes over a second on ResNet-18's 7x7 layer4 at batch 1).
    """
    points, timed = [], {}
    for outputs in (8, 16):
        small, ratio = problem.probe(outputs)
        if small not in timed:
            timed[small] = _probe_seconds(be, small, dtype, directions, seed)
        points.append((problem.N * problem.out_h * problem.out_w / ratio, ratio, timed[small]))
    (pixels_8, _, at_8), (pixels_16, ratio_16, at_16) = points
    full = problem.N * problem.out_h * problem.out_w
    estimate = {}
    for d in ("forward", "backward"):
        if ratio_16 <= 1:  # the larger probe is the problem itself
            estimate[d] = at_16[d]
        elif pixels_16 == pixels_8:  # one image's output fits both probes: scale by the batch
            estimate[d] = at_16[d] * ratio_16
        else:
            per_pixel = max(0.0, (at_16[d] - at_8[d]) / (pixels_16 - pixels_8))
            estimate[d] = at_8[d] + per_pixel * (full - pixels_8)
    estimate["forward+backward"] = estimate["forward"] + estimate["backward"]
    return estimate

