"""Run a plan: every problem x backend x dtype x thread count x direction, one row each.

For each (problem, backend, dtype, threads) the runner

1. estimates the time of one call from a cut-down probe (``Problem.probe``) and records the
   directions that would take longer than ``max_time`` as ``skipped``, with the estimate;
2. runs forward (and backward) once on the real problem and compares every output with
   ``kernels.reference``; a mismatch is recorded as ``wrong`` and not timed. This first call is
   also the warm-up: numba compiles here, and its extra time is recorded as ``compile_s``;
3. times each direction with ``timing.repeat``, then measures one more call's peak memory and,
   for backends with phases, one instrumented call's phase breakdown.

A backend that raises is recorded as ``error`` with its message and the run goes on. Each row
is appended to the run directory as soon as it exists.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

import kernels
from convbench import timing
from convbench.problems import DIRECTIONS, OPS, Problem
from convbench.results import RunDirectory, machine_metadata
from convbench.suites import load_suite
from kernels import _phases

TOLERANCE = {"float32": 1e-4, "float64": 1e-10}  # relative to the largest reference value
DTYPES = tuple(TOLERANCE)
SLOW_EXTRAS = 1.0  # seconds: calls slower than this get no extra memory / phase call


def all_backends() -> list[str]:
    """Every backend, plus the outside yardsticks (PyTorch) that are installed here."""
    reasons = kernels.available(include_yardsticks=True)
    return [*kernels.names(), *(y for y in kernels.yardsticks() if reasons[y] is None)]


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
    max_time: float = 10.0
    seed: int = 0

    def __post_init__(self):
        for name, values, allowed in (("ops", self.ops, OPS), ("directions", self.directions, DIRECTIONS),
                                      ("dtypes", self.dtypes, DTYPES)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"{name} must be among {', '.join(allowed)}; got {', '.join(map(str, values)) or 'nothing'}")
        known = kernels.names() + kernels.yardsticks()
        unknown = [b for b in self.backends if b not in known]
        if unknown or not self.backends:
            raise ValueError(f"backends must be among {', '.join(known)}; got {', '.join(unknown) or 'nothing'}")
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"match is not a regular expression ({exc}): {self.match!r}") from None
        for name in ("budget", "max_time"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds; got {getattr(self, name)}")
        bad_threads = [t for t in self.threads if not 1 <= t <= timing.max_threads()]
        if bad_threads or not self.threads:
            raise ValueError(f"threads must be between 1 and {timing.max_threads()} on this machine; got {self.threads}")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"rounds must be >= 1; got {self.rounds}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be >= 1; got {self.batch}")

    def problems(self) -> list[tuple[str, Problem]]:
        """(suite, problem) pairs selected by ops and match, in suite order."""
        chosen = []
        for suite in self.suites:
            for problem in load_suite(suite, self.batch):
                if problem.op in self.ops and (self.match is None or re.search(self.match, problem.name)):
                    chosen.append((suite, problem))
        if not chosen:
            raise ValueError(f"no problem in {', '.join(self.suites)} matches ops {self.ops} and --match {self.match!r}")
        return chosen

    def keys(self) -> Iterator[tuple]:
        for threads in self.threads:
            for dtype in self.dtypes:
                for suite, problem in self.problems():
                    for backend in self.backends:
                        for direction in self.directions:
                            yield (suite, problem.name, backend, dtype, threads, direction)


def row_key(row: dict) -> tuple:
    return (row["suite"], row["problem"], row["backend"], row["dtype"], row["threads"], row["direction"])


def _max_relative_error(got, expected) -> float:
    worst = 0.0
    for a, e in zip(got, expected):
        if e is None:
            continue
        scale = float(np.max(np.abs(e))) or 1.0
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - e))) / scale)
    return worst


class Runner:
    """Executes a Plan into a RunDirectory, skipping measurements it already holds."""

    def __init__(self, plan: Plan, run: RunDirectory, on_row: Callable[[dict], None] | None = None):
        self.plan, self.run, self.on_row = plan, run, on_row or (lambda row: None)
        self._reference: tuple = (None, None)

    def pending(self) -> list[tuple]:
        done = {row_key(r) for r in self.run.rows()}
        return [k for k in self.plan.keys() if k not in done]

    def execute(self) -> None:
        pending = set(self.pending())
        if not pending:
            return
        for backend in self.plan.backends:  # import now (torch, numba) so thread limits reach them
            try:
                kernels.get(backend)
            except kernels.BackendUnavailable:
                pass  # recorded as unavailable, cell by cell
        metadata = machine_metadata()
        problems = dict(((s, p.name), p) for s, p in self.plan.problems())
        peaks = {}
        for threads in self.plan.threads:
            with timing.threads(threads):
                peaks[threads] = (timing.sgemm_peak(), timing.copy_bandwidth())
        metadata["peaks"] = {t: {"sgemm_gflops": g, "copy_gbs": b} for t, (g, b) in peaks.items()}
        self.session = self.run.start_session(metadata)
        cells: dict[tuple, list[str]] = {}
        for key in self.plan.keys():  # plan order, grouped by everything but the direction
            if key in pending:
                cells.setdefault(key[:5], []).append(key[5])
        for (suite, name, backend, dtype, threads), directions in cells.items():
            base = {"suite": suite, **problems[suite, name].record(), "descriptor": problems[suite, name].descriptor(),
                    "backend": backend, "dtype": dtype, "threads": threads,
                    "peak_gflops": peaks[threads][0], "bandwidth_gbs": peaks[threads][1]}
            with timing.threads(threads):
                self._cell(problems[suite, name], base, directions)

    def _emit(self, base: dict, direction: str, status: str, **fields) -> None:
        problem_flops = fields.pop("flops")
        row = {"session": self.session, **base, "direction": direction, "status": status,
               "flops": problem_flops, **fields,
               "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if status == "ok":
            row["gflops"] = problem_flops / row["median_s"] / 1e9
            row["pct_of_peak"] = 100 * row["gflops"] / base["peak_gflops"]
        self.run.append(row)
        self._emitted.add(direction)
        self.on_row(row)

    def _reference_outputs(self, problem: Problem, dtype: str, arrays: dict) -> tuple:
        """(y, grads) of kernels.reference, kept for the latest problem only: cells come problem
        by problem, so every backend of a problem shares one reference computation."""
        if self._reference[0] != (problem, dtype):
            as64 = {k: v.astype(np.float64) for k, v in arrays.items()}
            y, ctx = problem.forward(kernels.reference, as64)
            self._reference = ((problem, dtype), (y, problem.backward(kernels.reference, as64, ctx)))
        return self._reference[1]

    def _cell(self, problem: Problem, base: dict, directions: list[str]) -> None:
        self._emitted: set[str] = set()
        dtype = base["dtype"]
        itemsize = np.dtype(dtype).itemsize
        flops = {d: problem.flops(d) for d in directions}
        extras = {d: {"flops": flops[d], "intensity": flops[d] / problem.bytes_moved(d, itemsize)} for d in directions}
        try:
            be = kernels.get(base["backend"])
        except kernels.BackendUnavailable as exc:
            for d in directions:
                self._emit(base, d, "unavailable", reason=str(exc), **extras[d])
            return
        stage = "probe"
        try:
            estimates = estimate_seconds(be, problem, dtype, directions, self.plan.seed)
            runnable = []
            for d in directions:
                if estimates and estimates[d] > self.plan.max_time:
                    self._emit(base, d, "skipped", estimate_s=estimates[d], **extras[d], reason=(
                        f"estimated {estimates[d]:.1f} s per call from a cut-down probe; "
                        f"over the {self.plan.max_time:g} s limit (--max-time)"))
                else:
                    runnable.append(d)
            if not runnable:
                return
            stage = "check"
            arrays = problem.inputs(dtype, self.plan.seed)
            first_forward, (y, ctx) = timing.timed(lambda: problem.forward(be, arrays))
            needs_backward = any(d != "forward" for d in runnable)
            first_backward, grads = (timing.timed(lambda: problem.backward(be, arrays, ctx))
                                     if needs_backward else (0.0, ()))
            y_ref, grads_ref = self._reference_outputs(problem, dtype, arrays)
            error = _max_relative_error((y, *grads), (y_ref, *grads_ref[: len(grads)]))
            if not error <= TOLERANCE[dtype]:  # NaN counts as wrong
                for d in runnable:
                    self._emit(base, d, "wrong", max_rel_err=error, **extras[d], reason=(
                        f"max relative error {error:.3g} against kernels.reference; tolerance {TOLERANCE[dtype]:g}"))
                return
            first = {"forward": first_forward, "backward": first_backward,
                     "forward+backward": first_forward + first_backward}
            calls = {
                "forward": lambda: problem.forward(be, arrays),
                "backward": lambda: problem.backward(be, arrays, ctx),
                "forward+backward": lambda: problem.backward(be, arrays, problem.forward(be, arrays)[1]),
            }
            for d in runnable:
                stage = d
                result = timing.repeat(calls[d], self.plan.budget, self.plan.rounds)
                measured = {
                    "rounds": len(result.times), "min_s": result.min, "median_s": result.median,
                    "iqr_s": result.iqr, "noisy": result.noisy, "first_call_s": first[d],
                    "compile_s": max(0.0, first[d] - result.median), "max_rel_err": error,
                    "estimate_s": estimates[d] if estimates else None,
                }
                if hasattr(be, "pick_of"):  # auto: which backend it chose for this problem
                    measured["pick"] = be.pick_of(ctx)
                if result.median < SLOW_EXTRAS:
                    measured["peak_mem_bytes"] = timing.peak_memory(calls[d])
                    with _phases.record() as phases:
                        calls[d]()
                    measured["phases"] = phases or None
                self._emit(base, d, "ok", **measured, **extras[d])
        except Exception as exc:  # isolate the failure: record it and go on with the next cell
            message = f"{type(exc).__name__} in {stage}: {exc}"
            detail = traceback.format_exc(limit=-3)
            for d in directions:
                if d not in self._emitted:
                    self._emit(base, d, "error", reason=message, traceback=detail, **extras[d])

def estimate_seconds(be, problem: Problem, dtype: str, directions: list[str], seed: int = 0) -> dict | None:
    """Seconds per call of each direction, extrapolated from two cut-down probes; None if tiny.

    Time is fitted as fixed + per_pixel * output pixels from probes with 8x8 and 16x16
    outputs, so a backend's fixed per-call cost (numba's dispatch, a BLAS call) is not
    multiplied by the size ratio, and naive's per-pixel loop cost is.
    """
    points = []
    for outputs in (8, 16):
        small, ratio = problem.probe(outputs)
        if ratio <= 1 and outputs == 8:
            return None
        arrays = small.inputs(dtype, seed)
        best = {"forward": float("inf"), "backward": 0.0 if directions == ["forward"] else float("inf")}
        for attempt in range(4):  # the first call may compile (numba): warm-up, then the best of 3
            t_forward, (_, ctx) = timing.timed(lambda: small.forward(be, arrays))
            t_backward = (timing.timed(lambda: small.backward(be, arrays, ctx))[0]
                          if directions != ["forward"] else 0.0)
            if attempt:
                best = {"forward": min(best["forward"], t_forward), "backward": min(best["backward"], t_backward)}
        points.append((problem.N * problem.out_h * problem.out_w / ratio, ratio, best))
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


def plan_from_dict(data: dict) -> Plan:
    return Plan(**data)


def plan_to_dict(plan: Plan) -> dict:
    return asdict(plan)
