"""auto: on each problem, the backend that is fastest on this machine, timed on first sight.

Like cuDNN's benchmark mode. The first call with a new signature (the op, every shape and
parameter, the dtype and the thread count) times forward+backward on each candidate backend and
keeps the winner, in memory and in a small JSON tuning cache on disk; later calls, and later
processes, go straight to it. The result is the picked backend's own result, wrapped in an auto
``ctx`` so that the backward pass goes to the same backend.

The cache is ``$CONVBENCH_TUNING_CACHE`` if set, else ``tuning.json`` in the user cache
directory (``platformdirs``). Its entries are tied to the machine they were measured on; a
cache from another machine, or one that cannot be read, is measured afresh and rewritten.
``picks()`` lists what has been measured; ``clear()`` forgets it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

import kernels
from kernels._checks import (
    Context,
    ConvProblem,
    PoolProblem,
    check_backward,
    check_conv2d,
    check_pool2d,
)
from kernels.traits import Traits

name = "auto"
description = "the fastest backend per problem signature, timed on first sight and cached on disk"
# it may pick scipy's FFTs (inexact) and numba (a thread pool of its own, beside BLAS's)
TRAITS = Traits(contender=False, picks=True, exact=False, own_threads=True)

TUNING_BUDGET = 0.05  # seconds of timed calls per candidate, after a warm-up call
MAX_ROUNDS = 7
PRUNE = 3  # a candidate whose first timed call is over 3x the fastest one's is not timed again

_memo: dict[tuple, kernels.Backend] = {}  # (op, problem, (threads, BLAS threads)) -> picked backend


def candidates(p: ConvProblem | PoolProblem) -> list[str]:
    """The contending backends that load here and are worth timing on problem ``p`` (the
    loop-bound ones only where one call is cheap: see ``kernels.Traits.worth_timing``)."""
    if isinstance(p, ConvProblem):
        op, K, groups, taps = "conv2d", p.K, p.groups, p.R * p.S
    else:
        op, K, groups, taps = "pool2d", p.C, 1, p.kernel_size[0] * p.kernel_size[1]
    usable = [n for n, reason in kernels.available().items() if reason is None and kernels.traits(n).contender]
    return [n for n in usable if kernels.traits(n).worth_timing(op, p.N, p.C, K, p.out_h, p.out_w, groups, taps)]


def cache_path() -> Path:
    override = os.environ.get("CONVBENCH_TUNING_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("convbench")) / "tuning.json"


def _machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"


@functools.cache
def _blas_pools() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded (numpy's), found once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas").lib_controllers


def _threads() -> tuple[int, int]:
    """(numba's threads, BLAS's threads): the pools a pick was timed with. They differ inside a
    training step on auto, which gives BLAS one thread beside numba's pool
    (``convbench.bench.timing.one_pool``), so a step's picks are its own. 0 for one not loaded."""
    try:
        import numba
    except ImportError:
        numba = None
    blas = max((pool.num_threads for pool in _blas_pools()), default=0)
    return (numba.get_num_threads() if numba is not None else 0), blas


def _key(op: str, p, threads: tuple[int, int]) -> str:
    """The tuning cache's key: ``conv2d N=4 C=1 ... dtype=float32 ... threads=2 blas=2``."""
    values = " ".join(f"{f.name}={getattr(p, f.name)}" for f in fields(p))
    return f"{op} {values} threads={threads[0]} blas={threads[1]}"


def _read() -> dict:
    """The picks cached for this machine; {} for a missing, foreign or damaged cache (any JSON
    at all, however deep), which is then measured afresh."""
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("machine") != _machine() or not isinstance(data.get("picks"), dict):
        return {}
    return data["picks"]


def _usable(entry: object, choices: list[str]) -> bool:
    """A cached entry names one of today's candidates (never auto itself, nor a yardstick)."""
    return isinstance(entry, dict) and entry.get("backend") in choices


def _store(key: str, entry: dict) -> None:
    """Add one pick to the cache on disk: read, merge and replace under a file lock, so that
    processes sharing the cache keep each other's picks."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock", timeout=30):
            picks = _read()
            picks[key] = entry
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
                json.dump({"machine": _machine(), "picks": picks}, f, indent=1, sort_keys=True)
            try:
                os.replace(f.name, path)  # atomic: a reader sees the old cache or the new one
            except OSError:
                os.unlink(f.name)  # no tmp file left behind
                raise
    except (OSError, Timeout) as exc:
        warnings.warn(f"auto: cannot write the tuning cache {path}: {exc}; picks are kept in memory only",
                      RuntimeWarning, stacklevel=4)


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _tune(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each candidate's median seconds: all are called once to warm up (numba loads or compiles
    there) and once timed; those within ``PRUNE`` times the fastest of these calls are then
    timed to ``TUNING_BUDGET`` (at least 3 calls), the others keep their one call: they cannot win,
    and timing them again took most of the tuning (scipy's FFTs at 0.2 s a call on ResNet-18)."""
    first = {}
    for name, call in calls.items():
        call()
        first[name] = _seconds(call)
    fastest = min(first.values())
    return {name: _median_seconds(call, first[name]) if first[name] <= PRUNE * fastest else first[name]
            for name, call in calls.items()}


def _median_seconds(call, first: float) -> float:
    times = [first]
    while len(times) < MAX_ROUNDS and (sum(times) < TUNING_BUDGET or len(times) < 3):
        times.append(_seconds(call))
    return float(np.median(times))


def _backend_for(op: str, p, forward_backward) -> kernels.Backend:
    """The memoised pick for this signature; measured (and cached on disk) the first time."""
    threads = _threads()
    be = _memo.get((op, p, threads))
    if be is not None:
        return be
    key, choices = _key(op, p, threads), candidates(p)
    entry = _read().get(key)
    if not _usable(entry, choices):
        seconds = _tune({n: functools.partial(forward_backward, kernels.get(n)) for n in choices})
        entry = {"backend": min(seconds, key=seconds.get), "seconds": seconds, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _store(key, entry)
    be = _memo[op, p, threads] = kernels.get(entry["backend"])
    return be


def picks() -> dict[str, dict]:
    """Every signature in the tuning cache: the picked backend and each candidate's median seconds."""
    return _read()


def clear() -> None:
    """Forget every pick, in memory and on disk."""
    _memo.clear()
    try:
        cache_path().unlink()
    except FileNotFoundError:
        pass


def pick_of(ctx: Context) -> str:
    """The backend that ran the forward pass that made ``ctx``."""
    return ctx.saved["backend"].name


def _ones(y):
    return np.ones(y.shape, dtype=y.dtype)


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}

    def forward_backward(be):
        y, ctx = be.conv2d_forward(x, w, b, **kw)
        be.conv2d_backward(_ones(y), ctx)

    be = _backend_for("conv2d", p, forward_backward)
    y, ctx = be.conv2d_forward(x, w, b, **kw)
    return y, Context(name, "conv2d", p, {"backend": be, "ctx": ctx})


def conv2d_backward(dy, ctx, *, need_dx=True):
    check_backward(dy, ctx, name, "conv2d", need_dx)
    return ctx.saved["backend"].conv2d_backward(dy, ctx.saved["ctx"], need_dx=need_dx)


def _pool_forward(op: str, x, kernel_size, stride, padding):
    p = check_pool2d(x, kernel_size, stride, padding)

    def forward_backward(be):
        y, ctx = getattr(be, f"{op}_forward")(x, kernel_size, stride=stride, padding=padding)
        getattr(be, f"{op}_backward")(_ones(y), ctx)

    be = _backend_for(op, p, forward_backward)
    y, ctx = getattr(be, f"{op}_forward")(x, kernel_size, stride=stride, padding=padding)
    return y, Context(name, op, p, {"backend": be, "ctx": ctx})


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    return _pool_forward("maxpool2d", x, kernel_size, stride, padding)


def maxpool2d_backward(dy, ctx):
    check_backward(dy, ctx, name, "maxpool2d")
    return ctx.saved["backend"].maxpool2d_backward(dy, ctx.saved["ctx"])


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    return _pool_forward("avgpool2d", x, kernel_size, stride, padding)


def avgpool2d_backward(dy, ctx):
    check_backward(dy, ctx, name, "avgpool2d")
    return ctx.saved["backend"].avgpool2d_backward(dy, ctx.saved["ctx"])
