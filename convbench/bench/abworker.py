"""The worker of ``convbench ab``: one per revision, run as a script inside that revision's
git worktree, speaking JSON lines on stdin and stdout.

It imports nothing of the harness's convbench (the harness imports its ``max_relative_error``
and ``call_times`` instead), only
the revision's ``kernels`` (the interface of
INTERFACE.md, which every revision keeps) and numpy, so the same worker drives any commit,
older or newer than the code that starts it; a training step imports the revision's own
``convbench.cnn.step`` too, from the revision's worktree, so a step compares the revision's
network code as well as its kernels. Requests::

    {"op": "setup", "id": ID, "problem": {...}, "backend": B, "dtype": D, "threads": T,
     "direction": DIR, "seed": S}      -> {"ok": true, "max_rel_err": E, "first_s": F}
    {"op": "setup", "id": ID, "step": {"model": M, "batch": N}, "backend": B, "dtype": D,
     "threads": T, "seed": S, "max_time": SECONDS}  -> the same, for one training step
    {"op": "slice", "id": ID, "seconds": S, "exact": false}  -> {"ok": true, "times": [...]}
    {"op": "quit"}

A failure answers ``{"ok": false, "status": "error" | "unavailable", "reason": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback


def _inputs(p: dict, dtype: str, seed: int) -> dict:
    """The same seeded arrays as ``convbench.bench.problems.Problem.inputs``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pad = p["padding"] if len(p["padding"]) == 4 else [p["padding"][0]] * 2 + [p["padding"][1]] * 2  # (t, b, l, r)
    ho = (p["H"] + pad[0] + pad[1] - p["dilation"][0] * (p["R"] - 1) - 1) // p["stride"][0] + 1
    wo = (p["W"] + pad[2] + pad[3] - p["dilation"][1] * (p["S"] - 1) - 1) // p["stride"][1] + 1
    arrays = {"x": rng.standard_normal((p["N"], p["C"], p["H"], p["W"])).astype(dtype),
              "dy": rng.standard_normal((p["N"], p["K"], ho, wo)).astype(dtype)}
    if p["op"] == "conv2d":
        arrays["w"] = rng.standard_normal((p["K"], p["C"] // p["groups"], p["R"], p["S"])).astype(dtype)
        arrays["b"] = rng.standard_normal((p["K"],)).astype(dtype)
    return arrays


def _forward(be, p: dict, a: dict):
    if p["op"] == "conv2d":
        return be.conv2d_forward(a["x"], a["w"], a["b"], stride=tuple(p["stride"]), padding=tuple(p["padding"]),
                                 dilation=tuple(p["dilation"]), groups=p["groups"])
    return getattr(be, f"{p['op']}_forward")(a["x"], (p["R"], p["S"]), stride=tuple(p["stride"]),
                                              padding=tuple(p["padding"]))


def _backward(be, p: dict, a: dict, ctx) -> tuple:
    grads = getattr(be, f"{p['op']}_backward")(a["dy"], ctx)
    return grads if isinstance(grads, tuple) else (grads,)


def call_times(fn, seconds: float, exact: bool = False, calls: int | None = None,
               at_most: int | None = None) -> list[float]:
    """The harness's one timing loop: the times of back-to-back calls of ``fn`` (perf_counter),
    exactly ``calls`` of them if given, one if ``exact``, otherwise until ``seconds`` are spent
    (at least one call, at most ``at_most``). It lives here for the reason ``max_relative_error``
    does: the worker of any revision times with the same loop as the harness."""
    times: list[float] = []
    spent = 0.0
    while (len(times) < calls if calls is not None else
           not times or (not exact and spent < seconds and (at_most is None or len(times) < at_most))):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return times


def max_relative_error(got, expected) -> float:
    """The largest absolute error of any output, relative to that output's largest reference
    value (None entries skipped). The harness's one definition: it lives here because the worker
    may import nothing of convbench, and ``convbench.bench.runner`` imports it from here."""
    import numpy as np

    worst = 0.0
    for g, e in zip(got, expected):
        if e is None:
            continue
        scale = float(np.max(np.abs(e))) or 1.0
        worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - e))) / scale)
    return worst


PAGE = 4096  # what the offsets span: 4 KiB aliasing between two buffers depends on the address within a page
_rng = None


def fresh_inputs(arrays: dict) -> dict:
    """New copies of ``arrays``, each starting at a random 16-byte offset within a page: the
    harness's one way of laying out a turn's inputs (the runner's and this worker's), so that
    where the buffers lie varies from turn to turn and shows in the samples instead of biasing
    a whole process (Curtsinger and Berger's STABILIZER, for the inputs). It does not remove the
    per-process speed states docs/methodology.md measures; the several processes carry those."""
    import numpy as np

    global _rng
    if _rng is None:
        _rng = np.random.default_rng()  # from fresh entropy: each process draws its own layouts
    fresh = {}
    for key, a in arrays.items():
        raw = np.empty(a.nbytes + 2 * PAGE, np.uint8)
        start = -raw.ctypes.data % PAGE + 16 * int(_rng.integers(0, PAGE // 16))
        fresh[key] = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
        fresh[key][...] = a
    return fresh


class _Threads:
    """BLAS and numba thread counts, set once per request."""

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self.controller, self.current, self.limit = ThreadpoolController(), None, None

    def set(self, count: int) -> None:
        if count != self.current:
            self.limit = self.controller.limit(limits=count)
            self.current = count
        numba = sys.modules.get("numba")  # imported by the first numba backend, whenever that is
        if numba is not None and numba.get_num_threads() != count:
            numba.set_num_threads(count)


FAILURE_FIELDS = ("status", "reason", "max_rel_err")  # what a setup that gives no call tells its row


def _setup_step(request: dict, calls: dict) -> dict:
    """A training step of the revision's own network code (``convbench.cnn.step.step_call``, imported
    from the revision's worktree, like its kernels) on its kernels, with ``convbench step``'s
    first-step checks. Its slices run inside the step's thread-pool context, entered once a slice."""
    import importlib

    try:
        step_call = importlib.import_module("convbench.cnn.step").step_call
    except (ImportError, AttributeError):
        return {"ok": False, "status": "unavailable",
                "reason": "this revision has no convbench.cnn.step.step_call: its training steps cannot be timed by ab"}
    result = step_call(request["step"]["model"], request["backend"], request["step"]["batch"], request["dtype"],
                       request["seed"], request["max_time"])
    if result["status"] != "ok":
        return {"ok": False, **{k: v for k, v in result.items() if k in FAILURE_FIELDS}}
    call = result["call"]
    # a first step over --max-time (numba compiling) was followed by a second: that one is the estimate
    first = result["first_call_s"] if result.get("estimate_s") is None else result["estimate_s"]
    calls[request["id"]] = (lambda fresh: call, request["threads"], first, result["pool"])
    return {"ok": True, "max_rel_err": result["max_rel_err"], "first_s": first}


def _setup(request: dict, calls: dict, threads: _Threads) -> dict:
    import kernels

    try:
        be = kernels.get(request["backend"])
    except kernels.BackendUnavailable as exc:
        return {"ok": False, "status": "unavailable", "reason": str(exc)}
    threads.set(request["threads"])  # after kernels.get, which may import numba
    if "step" in request:
        return _setup_step(request, calls)
    p, dtype, direction = request["problem"], request["dtype"], request["direction"]
    arrays = _inputs(p, dtype, request["seed"])

    def once():
        start = time.perf_counter()
        y, ctx = _forward(be, p, arrays)
        grads = _backward(be, p, arrays, ctx) if direction != "forward" else ()
        return time.perf_counter() - start, y, ctx, grads

    first, y, ctx, grads = once()
    if first > request["max_time"]:  # numba compiling for a fresh worktree's cold cache: a call of its own
        first = min(first, once()[0])
    as64 = {k: v.astype("float64") for k, v in arrays.items()}
    y_ref, ctx_ref = _forward(kernels.reference, p, as64)
    grads_ref = _backward(kernels.reference, p, as64, ctx_ref) if direction != "forward" else ()
    error = max_relative_error((y, *grads), (y_ref, *grads_ref))

    def make(fresh: bool):
        """The timed call; with ``fresh``, on new copies of the inputs (see convbench's runner)."""
        a = fresh_inputs(arrays) if fresh else arrays
        c = _forward(be, p, a)[1] if fresh and direction == "backward" else ctx
        return {"forward": lambda: _forward(be, p, a),
                "backward": lambda: _backward(be, p, a, c),
                "forward+backward": lambda: _backward(be, p, a, _forward(be, p, a)[1])}[direction]

    calls[request["id"]] = (make, request["threads"], first, contextlib.nullcontext)
    return {"ok": True, "max_rel_err": error, "first_s": first}


def _slice(request: dict, calls: dict, threads: _Threads) -> dict:
    make, count, first, pool = calls[request["id"]]
    fn = make(fresh=first < request["seconds"] / 4)
    threads.set(count)
    with pool():
        times = call_times(fn, request["seconds"], request["exact"])
    return {"ok": True, "times": times}


def main() -> None:
    root = os.path.abspath(sys.argv[1])
    sys.path.insert(0, root)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # nothing a kernel prints may corrupt the protocol
    import kernels

    where = os.path.abspath(kernels.__file__)
    protocol.write(json.dumps({"ok": where.startswith(root + os.sep), "kernels": where}) + "\n")
    protocol.flush()
    calls: dict = {}
    threads = _Threads()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        try:
            answer = (_setup if request["op"] == "setup" else _slice)(request, calls, threads)
        except Exception as exc:  # noqa: BLE001 -- reported to the driver, which records it
            answer = {"ok": False, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=-3)}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
