"""What the machine is doing while we measure: its speed (a fixed calibration workload) and
who else is using its cores (CPU accounting from the kernel, through psutil).

The calibration workload never changes between versions of this code (``CALIBRATION_VERSION``
names it): a 256 x 256 float32 matrix product and an 8 MiB copy on one thread, and a 512 x 512
float32 matrix product on the threads the measurements use, each timed several times. Measured
at intervals through every run, it lets ``compare`` tell a machine that got slower from code
that did. The threaded product is there because on a shared virtual machine the cores' joint
speed drifts on its own (a neighbour on the host's sibling hyperthreads, invisible to CPU
accounting): per turn it tracks our 2-thread kernels far better than the 1-thread pair does.

Contention is measured, not guessed: over a measurement, the cores' busy time (``/proc/stat``:
user, system, interrupts and steal, i.e. time the hypervisor gave to another guest) minus our
own processes' CPU time is what others took. A measurement during which others took more than
the cores we did not ask for (plus ``SPARE_CORES_SLACK``) did not get the cores it asked for.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import psutil
from threadpoolctl import threadpool_limits

from convbench.bench.abworker import call_times
from convbench.bench.timing import usable_cores
from kernels.quiet import cpu_seconds

CALIBRATION_VERSION = 2
# glibc's malloc serves a block above its mmap threshold with fresh pages (a page fault per 4 KiB
# on first touch), and raises that threshold, up to 32 MiB, the first time such a block is freed.
# So a process's history decides whether numpy's large temporaries come from the heap or from
# fresh pages, and one process ran stride_tricks' seed002_conv backward 3x slower than another
# (1.4 ms against 0.44) for the whole of an A/A `convbench ab`. Fixing the thresholds where a
# warmed-up process ends makes every measuring process alike.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # as glibc's own rule sets it beside a raised mmap threshold
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
SPARE_CORES_SLACK = 0.25  # cores others may use on average before a measurement is contended
BUSY_AT_START = 0.25  # cores in use by others, at the start of a run, before we warn


def _busy_seconds() -> float:
    """Seconds all cores together spent not idle since boot (steal included: a core the
    hypervisor gave to someone else was not ours either)."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


@dataclass
class CpuMeter:
    """Accumulates wall time, our CPU time and others' CPU time over many short intervals.

    ``pids``: the processes whose CPU time is ours (default: this one). Use ``with meter:``
    around each timed slice; the totals add up over every slice.
    """

    pids: list[int] = field(default_factory=lambda: [os.getpid()])
    wall: float = 0.0
    own_cpu: float = 0.0
    others_cpu: float = 0.0

    def __post_init__(self):
        self._processes = [psutil.Process(pid) for pid in self.pids]

    def __enter__(self) -> CpuMeter:
        self._start = (time.perf_counter(), cpu_seconds(self._processes), _busy_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall, own, busy = time.perf_counter(), cpu_seconds(self._processes), _busy_seconds()
        self.wall += wall - self._start[0]
        self.own_cpu += own - self._start[1]
        self.others_cpu += max(0.0, (busy - self._start[2]) - (own - self._start[1]))

    def record(self, threads: int, cores: int | None = None) -> dict:
        """The fields a results row carries: cores others used on average, our CPU per wall
        second, and whether the measurement was contended."""
        cores = cores or usable_cores()
        others = self.others_cpu / self.wall if self.wall > 0 else 0.0
        return {"others_cores": round(others, 4),
                "cpu_per_wall": round(self.own_cpu / self.wall, 4) if self.wall > 0 else None,
                "load1": round(os.getloadavg()[0], 2),
                "contended": bool(others > max(0, cores - threads) + SPARE_CORES_SLACK)}


def steady_allocator() -> str | None:
    """Fix this process's malloc thresholds (``MMAP_THRESHOLD``, glibc only) so that its history
    cannot change the cost of large temporaries; returns what was set, or None where nothing
    could be (another C library). Child processes get the same through ``ALLOCATOR_ENV``."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        if not (libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, TRIM_THRESHOLD)):
            return None
    except (OSError, AttributeError):
        return None
    return f"glibc malloc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"


def others_busy(seconds: float = 0.5) -> float:
    """Cores in use by other processes over ``seconds`` (this one sleeps meanwhile)."""
    meter = CpuMeter()
    with meter:
        time.sleep(seconds)
    return meter.others_cpu / meter.wall


def busy_warning(seconds: float = 0.5) -> str | None:
    """A one-line warning when other processes are using the cores now (pyperf's system check
    in miniature), naming the busiest of them; None on a quiet machine."""
    processes = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != os.getpid()]
    for p in processes:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    others = others_busy(seconds)
    if others <= BUSY_AT_START:
        return None
    usage = []
    for p in processes:
        try:
            usage.append((p.cpu_percent(None), p.info["name"], p.pid))
        except psutil.Error:
            pass
    top = ", ".join(f"{name} (pid {pid}, {pct:.0f} %)" for pct, name, pid in sorted(usage, reverse=True)[:3] if pct >= 5)
    free = max(1, int(usable_cores() - others + 0.5))
    return (f"the machine is busy: other processes used {others:.2f} of {usable_cores()} cores over "
            f"{seconds:g} s{' (' + top + ')' if top else ''}; measurements they overlap will be "
            f"marked contended and get no faster/slower verdict, and a kernel on more threads than "
            f"the {free} free core{'s' * (free > 1)} waits milliseconds a call for a core (--threads {free} avoids it)")


_CAL_RNG = np.random.default_rng(20261123)
_CAL_A = _CAL_RNG.standard_normal((256, 256), dtype=np.float32)
_CAL_B = _CAL_RNG.standard_normal((256, 256), dtype=np.float32)
_CAL_C = _CAL_RNG.standard_normal((512, 512), dtype=np.float32)
_CAL_SRC = np.ones(2**20)  # 8 MiB
_CAL_DST = np.empty_like(_CAL_SRC)


def calibrate(threads: int = 1, repeats: int = 7) -> dict:
    """Seconds of the fixed workload (the fastest of ``repeats`` each, as the verdicts use the
    fastest calls): the 1-thread product and copy, and the product on ``threads`` threads.

    ``index_s`` is the geometric mean of the three: one number for the machine's speed, compute,
    memory and the cores together. Only calibrations of one version and one ``threads`` compare.
    """
    def fastest(fn) -> float:
        fn()
        return min(call_times(fn, 0.0, calls=repeats))

    with threadpool_limits(limits=1):
        sgemm = fastest(lambda: _CAL_A @ _CAL_B)
    copy = fastest(lambda: np.copyto(_CAL_DST, _CAL_SRC))
    with threadpool_limits(limits=threads):
        cores = fastest(lambda: _CAL_C @ _CAL_C)
    return {"version": CALIBRATION_VERSION, "threads": threads, "sgemm_s": sgemm, "copy_s": copy,
            "sgemm_threads_s": cores, "index_s": float(np.cbrt(sgemm * copy * cores)),
            "time": time.time()}
