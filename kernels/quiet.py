"""Waiting until this process's thread pools have gone to sleep (``quiesce``), so that a pool
left spinning by one measured call does not take the cores of the next one.

Here, beside the kernels, because ``kernels.auto`` times candidate backends one after another as
the harness does (``convbench.bench.machine`` uses it from here).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

QUIET_CORES = 0.2  # our process's CPU use, in cores, while its main thread sleeps, below which its pools are asleep
QUIET_STEP = 0.005  # seconds between looks
QUIET_LIMIT = 1.0  # seconds at most that ``quiesce`` waits
TASKS = Path("/proc/self/task")  # Linux: one folder per thread of this process, with its state


def quiesce(step: float = QUIET_STEP, limit: float = QUIET_LIMIT, busy: Callable[[], bool] | None = None,
             pids: tuple[int, ...] = ()) -> float:
    """Wait until this process's worker threads (and those of ``pids``) have gone to sleep;
    returns the seconds waited.

    A thread pool spins for a while after its parallel region (OpenBLAS for about 2**28
    cycles, 0.1 s here; OpenMP's for its spin count) and, on a machine with as many cores as
    threads, the spinning pool takes cores from whatever runs next: numba's and PyTorch's 2-thread
    ResNet-18 convolutions ran 1.7-2x slower right after a BLAS call than 0.1 s later, and
    `convbench ab`'s workers, which take turns, are ``pids`` (one revision's pool left spinning
    made the other's tiny calls take a scheduler slice, 20 ms instead of 50 µs). So interleaved
    measurements call this before every slice: the main thread sleeps ``step`` at a time while
    ``busy()`` (default: a thread other than the caller is running or waiting for a core, or,
    without ``/proc``, the processes' CPU use over a step is above ``QUIET_CORES``), at most
    ``limit``. A thread's state does not depend on the machine's load; a CPU clock does: a
    spinning thread that other processes keep off the cores for a step reads as quiet (tests
    inject ``busy``).
    """
    busy = busy or ((lambda: threads_awake(pids)) if TASKS.is_dir() else lambda: cpu_busy(step, pids))
    start = time.perf_counter()
    while busy() and time.perf_counter() - start < limit:
        time.sleep(step)
    return time.perf_counter() - start


def threads_awake(pids: tuple[int, ...] = ()) -> bool:
    """Whether a thread of this process other than the caller, or any thread of ``pids``, is
    running or runnable (state R)."""
    me = str(threading.get_native_id())
    folders = [TASKS, *(Path(f"/proc/{pid}/task") for pid in pids)]
    for folder in folders:
        try:
            with os.scandir(folder) as tasks:
                for task in tasks:
                    if folder == TASKS and task.name == me:
                        continue
                    try:
                        stat = Path(task.path, "stat").read_text()
                    except OSError:  # the thread ended meanwhile
                        continue
                    if stat[stat.rindex(")") + 2] == "R":
                        return True
        except OSError:  # the process ended
            continue
    return False


def cpu_busy(step: float, pids: tuple[int, ...] = ()) -> bool:
    """Where threads' states cannot be read: whether the CPU use of this process and ``pids``
    over ``step`` of sleep is above ``QUIET_CORES``."""
    processes = [psutil.Process()]
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.Error:  # the process ended, as `threads_awake` allows
            pass
    used, t0 = cpu_seconds(processes), time.perf_counter()
    time.sleep(step)
    return (cpu_seconds(processes) - used) / (time.perf_counter() - t0) >= QUIET_CORES


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total
