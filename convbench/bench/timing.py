"""Careful timing: explicit threads, adaptive repeats, robust statistics, and the machine's peaks.

Like ``timeit``'s autorange and ``torch.utils.benchmark``: the caller warms the function up,
then it repeats until a time budget is spent (or exactly ``calls`` times), and the median and
the interquartile range describe the result; a measurement whose IQR exceeds 10 % of its median
is flagged noisy (``convbench.bench.stats.is_noisy``).
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from convbench.bench import limits, probes, stats
from convbench.bench.abworker import call_times


@dataclass(frozen=True)
class Timing:
    times: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def iqr(self) -> float:
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)

    @property
    def noisy(self) -> bool:
        return stats.is_noisy(self.times)


def repeat(fn: Callable[[], object], budget: float, calls: int | None = None, max_calls: int = 10_000) -> Timing:
    """Time ``fn`` exactly ``calls`` times, or until ``budget`` seconds are spent (at least once)."""
    return Timing(tuple(call_times(fn, budget, calls=calls, at_most=max_calls)))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """One call: (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def peak_memory(fn: Callable[[], object]) -> int:
    """Bytes allocated at the peak of one call, above what was allocated before it.

    numpy reports its buffers to tracemalloc, so this counts every temporary array.
    """
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return max(0, tracemalloc.get_traced_memory()[1] - before)
    finally:
        if not already:
            tracemalloc.stop()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_threads(counts: list[int]) -> list[int]:
    """``counts`` unless one repeats or lies outside 1..``max_threads()`` (ValueError naming it):
    the rule of every plan's thread counts, ``run``'s and ``step``'s."""
    return [limits.whole("threads", t, 1, max_threads()) for t in limits.distinct("threads", counts)]


def max_threads() -> int:
    """The most threads a measurement may ask for here (numba cannot exceed its pool)."""
    try:
        import numba
    except ImportError:
        return usable_cores()
    return numba.config.NUMBA_NUM_THREADS


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Limit BLAS/OpenMP (threadpoolctl) and numba to ``count`` threads inside the block."""
    if not 1 <= count <= max_threads():
        raise ValueError(f"threads must be between 1 and {max_threads()} on this machine; got {count}")
    try:
        import numba
    except ImportError:
        numba = None
    # the yardstick, if a run loaded it: same threads for it (its module imports torch lazily)
    torch = sys.modules["kernels.torch_yardstick"].torch() if "kernels.torch_yardstick" in sys.modules else None
    torch = torch or sys.modules.get("torch")
    previous = (numba.get_num_threads() if numba is not None else None,
                torch.get_num_threads() if torch is not None else None)
    with threadpool_limits(limits=count):
        if numba is not None:
            numba.set_num_threads(count)
        if torch is not None:
            torch.set_num_threads(count)
        try:
            yield
        finally:
            if numba is not None:
                numba.set_num_threads(previous[0])
            if torch is not None:
                torch.set_num_threads(previous[1])


@contextmanager
def one_pool(backend: str) -> Iterator[None]:
    """Around whole training steps on ``backend``: where its kernels run on a thread pool of
    their own (``kernels.traits(backend).own_threads``: numba's OpenMP threads), BLAS gets one
    thread inside the block, so that the step's dense layers do not start a second pool that
    spins against the first on the same cores. Elsewhere nothing changes."""
    import kernels

    if not kernels.traits(backend).own_threads:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def sgemm_peak(seconds: float = 0.5, n: int = 1024) -> float:
    """GFLOP/s of numpy's float32 matrix product (n x n) with the current thread limits: best round."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS threads start here
    return 2 * n**3 / repeat(lambda: a @ b, seconds).min / 1e9


def peaks(count: int) -> tuple[float, float]:
    """(SGEMM GFLOP/s, copy GB/s) on ``count`` threads: the session's peaks, measured once
    (``convbench.bench.probes``)."""
    def probe() -> list[float]:
        with threads(count):
            return [sgemm_peak(), copy_bandwidth()]

    return tuple(probes.remembered(f"peaks-{count}", probe))


def copy_bandwidth(seconds: float = 0.3, megabytes: int = 128) -> float:
    """GB/s of a large array copy (bytes read + bytes written), best round: the roofline's slope."""
    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return 2 * src.nbytes / repeat(lambda: np.copyto(dst, src), seconds).min / 1e9
