"""``convbench step``: the full training step (forward, loss, backward, SGD update) per backend.

Each measurement first checks that one step on the backend gives the float64 reference's loss
(relative 1e-4 in float32), then times steps until the budget is spent. Plain steps, with no
per-layer timers, give the step time; every other step is instrumented instead and gives the
split into forward (with the loss), backward and update, and by layer kind (conv, pool, dense,
other), so the timers' own cost never counts against a backend next to PyTorch's bare step.
Rows go to the same run directory format as ``convbench run`` (suite ``step``, problem
``<model>-b<batch>``, direction ``step``, ``forward``, ``backward`` or ``update``), so
``convbench report`` and ``compare`` read them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import kernels
from convbench.bench import limits, timing
from convbench.bench.abworker import call_times
from convbench.bench.child import Child
from convbench.bench.executors import merge_rows
from convbench.bench.interleave import Entry, interleave, timing_fields
from convbench.bench.machine import ALLOCATOR_ENV, calibrate, steady_allocator
from convbench.bench.results import RunDirectory, machine_metadata, make_row
from convbench.bench.runner import DTYPES, MAX_TIME, TOLERANCE, all_backends, check_backends, default_processes
from convbench.cnn.data import embedded_digits, prepare
from convbench.cnn.layers import SGD
from convbench.cnn.models import MODELS, build_model, model_spec
from convbench.cnn.tune import bind, describe, tune_step
from kernels.quiet import quiesce

PARTS = ("step", "forward", "backward", "update")
PROBE_IMAGES = 4  # the larger of the two batches a step's time is estimated from
KINDS = ("conv", "pool", "dense", "other")


@dataclass
class StepPlan:
    """What ``convbench step`` measures; saved to plan.json (as ``command: step``) so that
    ``--resume`` finishes it. ``batches`` holds one size per model (None: each model's own)."""

    models: list[str] = field(default_factory=lambda: ["lenet5"])
    batches: list[int] | None = None
    backends: list[str] = field(default_factory=all_backends)
    threads: list[int] = field(default_factory=lambda: [timing.usable_cores()])
    dtype: str = "float32"
    budget: float = 2.0
    rounds: int | None = None
    max_time: float = MAX_TIME
    processes: int = field(default_factory=default_processes)
    command: str = "step"

    def __post_init__(self):
        limits.distinct("model", self.models, MODELS)
        if self.batches is None:
            self.batches = [MODELS[m].batch_size for m in self.models]
        if len(self.batches) != len(self.models):
            raise ValueError(f"batch-size needs one size per model ({len(self.models)}); got {self.batches}")
        for batch in self.batches:
            limits.whole("batch-size", batch)
        check_backends(self.backends)
        if isinstance(self.threads, int):  # a plan saved before thread counts were a list
            self.threads = [self.threads]
        timing.check_threads(self.threads)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        limits.seconds("budget", self.budget)
        limits.seconds("max-time", self.max_time)
        if self.rounds is not None:
            limits.whole("rounds", self.rounds, 1, limits.MAX_ROUNDS)
        limits.whole("processes", self.processes, 1, limits.MAX_PROCESSES)

    def pairs(self) -> list[tuple[str, int]]:
        """(model, batch size) in the plan's order."""
        return list(zip(self.models, self.batches))


class _Timed:
    """Wraps a layer's forward and backward to add their time to its kind's total."""

    def __init__(self, layer, totals: dict):
        self.layer, self.totals = layer, totals

    def forward(self, x):
        start = time.perf_counter()
        y = self.layer.forward(x)
        self.totals[self.layer.kind] += time.perf_counter() - start
        return y

    def backward(self, dy):
        start = time.perf_counter()
        dx = self.layer.backward(dy)
        self.totals[self.layer.kind] += time.perf_counter() - start
        return dx


def digits_batch(model: str, size: int, dtype: str):
    """The first ``size`` embedded digits, prepared as ``model`` trains on them: (x, y)."""
    data = prepare(embedded_digits(), val_fraction=0.0, dtype=dtype, preprocess=model_spec(model).preprocess)
    x, y = data.x_train[:size], data.y_train[:size]
    return (x, y % 2) if model == "seed000" else (x, y)


def _one_step(net, optimizer, x, y, totals: dict | None) -> dict:
    """One step: seconds of forward (with loss), backward and update; with ``totals``, each
    layer's time is also added to its kind's total there."""
    layers = net.layers
    if totals is not None:
        net.layers = [_Timed(layer, totals) for layer in layers]
    try:
        t0 = time.perf_counter()
        out = net.forward(x)
        loss, dout = net.loss(out, y)
        t1 = time.perf_counter()
        net.backward(dout)
        t2 = time.perf_counter()
    finally:
        net.layers = layers
    optimizer.step(layers)
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2, "step": t3 - t0, "loss": loss}


SLICES = 10  # each backend's budget is spent in this many turns, interleaved with the others'


def _step_function(backend: str, model: str, x, y, dtype: str, seed: int) -> Callable[[bool], dict]:
    """``step(instrumented)``: one training step on ``backend`` (raises BackendUnavailable). On a
    backend that picks among others (auto), the first step tunes the whole step first
    (``tune_step``; its time counts that, as numba's first counts its compiling) and its parts
    hold the ``picks`` (``describe``)."""
    be = kernels.get(backend)
    if backend == "torch":  # the yardstick runs the same network natively in PyTorch
        from convbench.cnn.torch_twin import torch_step

        return torch_step(model, x, y, dtype, sgd_settings(model), seed)
    def make() -> tuple:
        return build_model(model, be, seed=seed, dtype=dtype), SGD(**sgd_settings(model))

    net, optimizer = make()
    untuned = kernels.traits(backend).picks  # auto: its picks for the whole step, in the first one's thread limits

    def step(instrumented: bool = True) -> dict:
        nonlocal untuned
        picks = {}
        if untuned:
            bound = tune_step(make, x, y)
            bind(net, bound)
            untuned, picks = False, {"picks": describe(bound)}
        totals = dict.fromkeys(KINDS, 0.0) if instrumented else None
        parts = _one_step(net, optimizer, x, y, totals)
        return {**parts, **({f"{kind}_s": totals[kind] for kind in KINDS} if instrumented else {}), **picks}

    return step


def estimate_step_seconds(backend: str, model: str, batch_size: int, dtype: str = "float32", seed: int = 0,
                          refine_over: float = 0.0) -> float:
    """Seconds of one training step at ``batch_size``: timed directly up to ``PROBE_IMAGES``
    images; else a one-image step times the batch, a bound that is refined, where it passes
    ``refine_over``, as fixed + per-image cost from a step on ``PROBE_IMAGES`` images too (the
    per-image cost grows with the batch, a fixed cost per call does not). Each probe is the best
    of two steps after a warm-up step (where numba compiles and auto tunes)."""
    x, y = digits_batch(model, min(batch_size, PROBE_IMAGES), dtype)

    def probe(images: int) -> float:
        step = _step_function(backend, model, x[:images], y[:images], dtype, seed)
        with timing.one_pool(backend):
            step(False)
            return min(step(False)["step"] for _ in range(2))

    if batch_size <= PROBE_IMAGES:
        return probe(batch_size)
    on_one = probe(1)
    if on_one * batch_size <= refine_over:
        return on_one * batch_size
    per_image = max(0.0, (probe(PROBE_IMAGES) - on_one) / (PROBE_IMAGES - 1))
    return on_one + per_image * (batch_size - 1)


def measure_steps(backends: list[str], model: str, batch_size: int, dtype: str, budget: float,
                  rounds: int | None, seed: int = 0, between: Callable[[], None] | None = None,
                  max_time: float = MAX_TIME) -> dict[str, dict]:
    """Per backend: median seconds of each part of a training step and of each layer kind, or a
    'skipped', 'wrong', 'unavailable' or 'error' verdict.

    A backend whose step takes over ``max_time`` is skipped (naive estimated from fewer images
    first, the others by their second step where the first passed it). Each backend's first
    step is checked against the float64 reference's loss. Then the backends
    take turns (in a rotating order), each turn spending a tenth of ``budget`` (or, with
    ``rounds``, one step pair), so that a machine drifting during the run shifts every backend
    alike. A timed step pair is one plain step, whose time is the step's, and one instrumented
    step, which gives the split by part and layer kind.
    """
    x, y = digits_batch(model, batch_size, dtype)
    expected = _reference_loss(model, x, y, seed)
    results: dict[str, dict] = {}
    steps, timed = {}, {}
    for backend in backends:
        results[backend] = _first_step(backend, model, batch_size, x, y, dtype, seed, max_time, expected)
        if results[backend]["status"] == "ok":
            steps[backend], timed[backend] = results[backend].pop("step"), []

    def turn_of(backend: str) -> Callable[[float, bool], list[float]]:
        def one_turn(seconds: float, exact: bool) -> list[float]:
            plain_steps, instrumented = [], []

            def pair() -> None:
                plain_steps.append(steps[backend](False))
                instrumented.append(steps[backend](True))

            with timing.one_pool(backend):
                call_times(pair, seconds, exact)
            timed[backend].append(instrumented)
            return [s["step"] for s in plain_steps]
        return one_turn

    entries = [Entry(backend, turn_of(backend)) for backend in steps]
    interleave(entries, budget, rounds or SLICES, exact=rounds is not None, between=between, settle=quiesce)
    for entry in entries:
        if entry.error is not None:
            results[entry.key] = {"status": "error", "reason": f"{type(entry.error).__name__}: {entry.error}"}
        else:
            results[entry.key].update(calls=sum(entry.calls), fields=_step_fields(entry, timed[entry.key]),
                                      meter=entry.meter)
    return {backend: results[backend] for backend in backends}


def _first_step(backend: str, model: str, batch_size: int, x, y, dtype: str, seed: int, max_time: float,
                expected: float) -> dict:
    """A backend's first step, checked against the reference's loss: ``{"status": "ok", "step":
    the step function, ...}``, or why it will not be timed (skipped, unavailable, error, wrong)."""
    try:
        # a loop-bound backend (naive) is estimated from fewer images before any whole step;
        # the others' first step is the bound, and where it passes the limit (compiling
        # counts in it) their second step decides
        loop_bound = kernels.traits(backend).loop_bound
        estimate = estimate_step_seconds(backend, model, batch_size, dtype, seed, max_time) if loop_bound else None
        if estimate is None or estimate <= max_time:
            step = _step_function(backend, model, x, y, dtype, seed)
            with timing.one_pool(backend):
                warm_up = step(False)  # numba compiles here
                if warm_up["step"] > max_time:
                    estimate = step(False)["step"]
        if estimate is not None and estimate > max_time:
            how = "estimated from steps on fewer images" if loop_bound else "its second step"
            return {"status": "skipped", "estimate_s": estimate,
                    "reason": f"{estimate:.1f} s per step ({how}); over the {max_time:g} s limit (--max-time)"}
    except kernels.BackendUnavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # recorded, and the run goes on
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    error = abs(warm_up["loss"] - expected) / abs(expected)
    if not error <= TOLERANCE[dtype]:
        return {"status": "wrong", "max_rel_err": error,
                "reason": f"first-step loss {warm_up['loss']:.6g} vs the reference's {expected:.6g}"}
    return {"status": "ok", "step": step, "first_call_s": warm_up["step"], "max_rel_err": error, "estimate_s": estimate,
            "picks": warm_up.get("picks")}


def _step_fields(entry: Entry, turns: list[list[dict]]) -> dict:
    """The timing fields of the plain step (the entry's own) and of each part the instrumented
    steps of each turn split it into."""
    keys = [key for key in turns[0][0] if key not in ("step", "loss")]
    return {"step": entry.summary(), **{key: timing_fields(
        [[float(np.median([s[key] for s in turn])) for turn in turns]],
        [[min(s[key] for s in turn) for turn in turns]], [entry.calls]) for key in keys}}


def _part_fields(result: dict, part: str, threads: int) -> dict:
    """What ``measure_steps``' result for one backend tells the row of one part of its step."""
    if result["status"] != "ok":
        return {"reason": result["reason"], "max_rel_err": result.get("max_rel_err"),
                "estimate_s": result.get("estimate_s")}
    fields = {**result["fields"][part], "max_rel_err": result["max_rel_err"], "estimate_s": result["estimate_s"],
              **result["meter"].record(threads)}
    if part == "step":  # PyTorch's step is not split by layer kind: None there
        fields.update({f"{k}_s": result["fields"].get(f"{k}_s", {}).get("median_s") for k in KINDS},
                      first_call_s=result["first_call_s"], picks=result["picks"])
    return fields


def _reference_loss(model: str, x, y, seed: int) -> float:
    """The loss of the first training step of the float64 reference network on ``x, y``."""
    reference = build_model(model, kernels.reference, seed=seed, dtype="float64")
    return reference.train_step(x.astype(np.float64), y, SGD(**sgd_settings(model)))[0]


def step_call(model: str, backend: str, batch_size: int, dtype: str, seed: int = 0,
              max_time: float = MAX_TIME) -> dict:
    """A training step of ``model`` on ``backend`` to time (what ``convbench ab``'s worker times in
    each revision): ``convbench step``'s first step and its checks (``_first_step``), and where
    its status is ok, ``call`` (one plain step) and ``pool`` (the thread-pool context the calls
    are to run in: ``timing.one_pool``, entered once around many calls, not once a call)."""
    x, y = digits_batch(model, batch_size, dtype)
    result = _first_step(backend, model, batch_size, x, y, dtype, seed, max_time, _reference_loss(model, x, y, seed))
    if result["status"] == "ok":
        step = result.pop("step")
        result.update(call=lambda: step(False), pool=lambda: timing.one_pool(backend))
    return result


def measure_step(backend: str, model: str, batch_size: int, dtype: str, budget: float,
                 rounds: int | None, seed: int = 0) -> dict:
    """``measure_steps`` for one backend; BackendUnavailable is raised rather than recorded."""
    result = measure_steps([backend], model, batch_size, dtype, budget, rounds, seed)[backend]
    if result["status"] == "unavailable":
        raise kernels.BackendUnavailable(result["reason"])
    return result


def sgd_settings(model: str) -> dict:
    """The optimizer settings ``model`` trains with: ``SGD(**sgd_settings(model))``."""
    return model_spec(model).sgd()


def run_steps(run: RunDirectory, models: list[tuple[str, int]], backends: list[str], threads: int | list[int],
              dtype: str = "float32", budget: float = 2.0, rounds: int | None = None,
              on_row: Callable[[dict], None] | None = None, max_time: float = MAX_TIME, processes: int = 1,
              on_stage: Callable[[str], None] | None = None) -> None:
    """Measure every thread count x (model, batch) x backend into ``run``, skipping what it
    already holds. A model's backends are timed interleaved (``measure_steps``), here or in
    ``processes`` fresh worker processes one after another (each with its share of the budget
    and the rounds, one sample of a process's own speed), and written when it finishes; each
    thread count is a session of its own (its peaks). ``on_row`` hears each row as it is written,
    ``on_stage`` what is measured as it starts (model, thread count and process: a progress bar's
    postfix, which moves while a model's rows wait for every process)."""
    on_row, on_stage = on_row or (lambda row: None), on_stage or (lambda what: None)
    if processes == 1:
        _import(backends)
    metadata = {**machine_metadata(), "allocator": steady_allocator()}  # once: the same for every count
    for count in [threads] if isinstance(threads, int) else threads:
        _run_steps_on(run, metadata, models, backends, count, dtype, budget, rounds, on_row, max_time, processes,
                      on_stage)


def _import(backends: list[str]) -> None:
    """Import the backends now (torch, numba), so that the thread limits set next reach them."""
    for backend in backends:
        try:
            kernels.get(backend)
        except kernels.BackendUnavailable:
            pass


def measure_parts(backends: list[str], model: str, batch_size: int, dtype: str, budget: float, rounds: int | None,
                  threads: int, max_time: float, between: Callable[[], None] | None = None) -> dict[str, tuple]:
    """``measure_steps`` in this process: per backend, its status and the fields of each part's row."""
    results = measure_steps(backends, model, batch_size, dtype, budget, rounds, between=between, max_time=max_time)
    return {b: (r["status"], {part: _part_fields(r, part, threads) for part in PARTS}) for b, r in results.items()}


def _parts_in_a_process(task: dict) -> tuple[dict, list[dict]]:
    """``measure_parts(**task)`` in a worker process, at the task's thread count, and the
    calibrations taken between its turns."""
    _import(task["backends"])
    with timing.threads(task["threads"]):
        calibrations = [calibrate(task["threads"])]
        parts = measure_parts(**task, between=lambda: calibrations.append(calibrate(task["threads"])))
    return parts, calibrations


def _measured(run: RunDirectory, session: str, record: dict, processes: int, task: dict,
              on_stage: Callable[[str], None]) -> list[tuple[str, dict]]:
    """(session, parts) of each process's ``measure_parts(**task)``: this one's (its ``session``),
    or ``processes`` fresh worker processes' one after another, each with its share of the budget
    and the rounds and a session of its own (the metadata ``record``), so that ``compare`` reads
    each one's calibrations as a process's."""
    what = f"{task['model']}-b{task['batch_size']} on {task['threads']} thread(s)"
    if processes == 1:
        on_stage(what)
        return [(session, measure_parts(**task, between=lambda: run.add_calibration(session, calibrate(task["threads"]))))]
    share = {**task, "budget": task["budget"] / processes,
             "rounds": task["rounds"] and math.ceil(task["rounds"] / processes)}
    measured = []
    for k in range(processes):
        on_stage(f"{what}: process {k + 1} of {processes}")
        own = run.start_session(record)
        child = Child(env=ALLOCATOR_ENV)
        try:
            parts, calibrations = child.call(_parts_in_a_process, share)
        finally:
            child.kill()
        for calibration in calibrations:
            run.add_calibration(own, calibration)
        measured.append((own, parts))
    return measured


def _row(measured: list[tuple[str, dict]], backend: str, base: dict) -> dict:
    """The row of one backend and part (``base["direction"]``) from each process's ``measure_parts``."""
    rows = []
    for session, parts in measured:
        status, fields = parts[backend]
        rows.append(make_row(session, base, status, **fields[base["direction"]]))
    return _merged(rows)


def _merged(rows: list[dict]) -> dict:
    """The row of one part of a step from each process's (``merge_rows``); a step's split by layer
    kind is the median of the processes' splits, its ``picks`` each process's that differ, by ``|``."""
    if len(rows) == 1:
        return rows[0]
    row = merge_rows(rows)
    if row["status"] == "ok" and row["direction"] == "step":
        for kind in KINDS:
            values = [r[f"{kind}_s"] for r in rows]
            row[f"{kind}_s"] = None if None in values else float(np.median(values))
        picks = [r["picks"] for r in rows if r.get("picks")]
        row["picks"] = " | ".join(dict.fromkeys(picks)) or None
    return row


def _run_steps_on(run: RunDirectory, metadata: dict, models: list[tuple[str, int]], backends: list[str],
                  threads: int, dtype: str, budget: float, rounds: int | None, on_row: Callable[[dict], None],
                  max_time: float, processes: int, on_stage: Callable[[str], None]) -> None:
    done = {(r["problem"], r["backend"], r["direction"]) for r in run.rows() if r.get("threads", threads) == threads}
    if all((f"{model}-b{batch}", b, part) in done for model, batch in models for b in backends for part in PARTS):
        return
    peak, bandwidth = timing.peaks(threads)
    with timing.threads(threads):
        record = {**metadata, "peaks": {threads: {"sgemm_gflops": peak, "copy_gbs": bandwidth}}}
        session = run.start_session(record)
        for model, batch in models:
            problem = f"{model}-b{batch}"
            pending = [b for b in backends if not all((problem, b, part) in done for part in PARTS)]
            if not pending:
                continue
            calibration = run.add_calibration(session, calibrate(threads))
            task = {"backends": pending, "model": model, "batch_size": batch, "dtype": dtype, "budget": budget,
                    "rounds": rounds, "threads": threads, "max_time": max_time}
            measured = _measured(run, session, record, processes, task, on_stage)
            for backend in pending:
                base = {"calibration_s": calibration["index_s"], "suite": "step", "problem": problem,
                        "op": "train_step", "N": batch, "repeat": 1, "backend": backend, "dtype": dtype,
                        "threads": threads, "peak_gflops": peak, "bandwidth_gbs": bandwidth}
                for part in PARTS:
                    if (problem, backend, part) in done:
                        continue  # written before a kill: each row exactly once
                    row = _row(measured, backend, {**base, "direction": part})
                    run.append(row)
                    on_row(row)
        run.add_calibration(session, calibrate(threads))
