"""The machine's state: the calibration workload and contention, seen by CPU accounting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
from pools import SLEEPING

from convbench.bench import machine
from convbench.bench.machine import CpuMeter
from kernels import quiet

SPIN = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"


@pytest.fixture
def busy_core():
    """Another process keeping one core busy, as a neighbour on a shared machine does."""
    process = subprocess.Popen([sys.executable, "-c", SPIN])
    time.sleep(0.3)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("threads", [1, 2])
def test_calibration_record(threads):
    record = machine.calibrate(threads, repeats=3)
    assert record["version"] == machine.CALIBRATION_VERSION and record["threads"] == threads
    assert 0 < record["sgemm_s"] < 1 and 0 < record["copy_s"] < 1 and 0 < record["sgemm_threads_s"] < 1
    parts = record["sgemm_s"] * record["copy_s"] * record["sgemm_threads_s"]
    assert record["index_s"] == pytest.approx(parts ** (1 / 3))


@pytest.mark.parametrize("others, threads, contended", [
    (1.0, 2, True),  # a busy neighbour on a 2-core machine, measuring with 2 threads
    (0.1, 2, False),  # a daemon's tick
    (1.0, 1, False),  # one thread asked for: the other core is free to lend
    (1.4, 1, True),
])
def test_contended_when_others_hold_the_cores_asked_for(others, threads, contended):
    meter = CpuMeter(wall=1.0, own_cpu=1.0, others_cpu=others)
    record = meter.record(threads, cores=2)
    assert record["contended"] is contended and record["others_cores"] == others


def test_a_busy_neighbour_is_seen(busy_core):
    meter = CpuMeter()
    with meter:
        time.sleep(0.5)
    assert meter.others_cpu / meter.wall > 0.5
    assert meter.record(threads=machine.usable_cores(), cores=machine.usable_cores())["contended"]


def test_the_start_of_a_run_warns_on_a_busy_machine_and_names_the_process(busy_core):
    warning = machine.busy_warning(0.5)
    assert warning is not None and "the machine is busy" in warning and f"pid {busy_core.pid}" in warning
    assert re.search(r"more threads than the \d+ free cores? waits .* \(--threads \d+ avoids it\)", warning), warning


def test_the_allocator_is_fixed_alike_in_this_process_and_in_workers():
    """A process's history must not decide whether large temporaries come from fresh pages:
    the thresholds are set here (glibc) and handed to worker processes in their environment."""
    import platform

    applied = machine.steady_allocator()
    if platform.libc_ver()[0] == "glibc":
        assert applied and f"{machine.MMAP_THRESHOLD >> 20} MiB" in applied
    assert machine.ALLOCATOR_ENV == {"MALLOC_MMAP_THRESHOLD_": str(machine.MMAP_THRESHOLD),
                                     "MALLOC_TRIM_THRESHOLD_": str(machine.TRIM_THRESHOLD)}


def test_quiesce_returns_at_once_when_nothing_spins():
    assert quiet.quiesce(busy=lambda: False) < 0.01


def test_quiesce_waits_while_another_thread_is_awake():
    """A pool that stays awake for 0.3 s after we start waiting, as one does after its parallel
    region: quiesce must not return before it sleeps, and must not hang. The state is injected,
    so what the rest of the machine is doing cannot change the outcome."""
    start = time.perf_counter()
    waited = quiet.quiesce(busy=lambda: time.perf_counter() < start + 0.3)
    assert 0.3 <= waited <= 0.3 + 0.1


def test_quiesce_gives_up_at_its_limit():
    waited = quiet.quiesce(limit=0.05, busy=lambda: True)
    assert 0.05 <= waited < 0.5


def test_a_spinning_thread_is_awake_and_a_sleeping_one_is_not():
    """The default test reads threads' states, which do not depend on load: a thread in a busy
    loop is running or runnable even while other processes hold every core."""
    if not quiet.TASKS.is_dir():
        pytest.skip("no /proc/self/task: quiesce falls back to the CPU clock here")
    stop, started = threading.Event(), threading.Event()

    def spin():
        started.set()
        while not stop.is_set():
            pass

    def wait():
        started.set()
        stop.wait()

    for target, awake in ((spin, True), (wait, False)):
        stop.clear(), started.clear()
        thread = threading.Thread(target=target)
        thread.start()
        started.wait()
        time.sleep(0.01)
        try:
            assert quiet.threads_awake() is awake
        finally:
            stop.set()
            thread.join()


SPINNER = "while True: pass"


@pytest.mark.subprocess
@pytest.mark.skipif(not quiet.TASKS.is_dir(), reason="no /proc: quiesce falls back to the CPU clock here")
def test_the_threads_of_other_processes_named_are_watched_too():
    """`convbench ab` settles on its workers: a spinning thread in one of ``pids`` is awake, and
    a process that has ended is none (its folder is gone)."""
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        deadline = time.monotonic() + 10
        while not quiet.threads_awake((spinner.pid,)) and time.monotonic() < deadline:
            time.sleep(0.01)  # the interpreter starting up may sleep on its disk reads
        assert quiet.threads_awake((spinner.pid,))
        assert quiet.quiesce(limit=0.05, pids=(spinner.pid,)) >= 0.05
    finally:
        spinner.kill()
        spinner.wait()
    assert not quiet.threads_awake((spinner.pid,))


@pytest.mark.subprocess
def test_without_proc_the_cpu_clock_of_the_processes_named_is_read():
    """The fallback where threads' states cannot be read: a process spinning a core uses well
    over QUIET_CORES of one (0.2) even beside two other busy processes on two cores."""
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        assert any(quiet.cpu_busy(0.1, (spinner.pid,)) for _ in range(3))
    finally:
        spinner.kill()
        spinner.wait()


QUIESCED = """
import numpy as np
from threadpoolctl import threadpool_limits
from kernels import quiet
a = np.ones((512, 512), dtype=np.float32)
with threadpool_limits(limits=2, user_api="blas"):
    a @ a
    print(quiet.threads_awake(), quiet.quiesce() < quiet.QUIET_LIMIT, quiet.threads_awake())
"""


@pytest.mark.subprocess
@pytest.mark.skipif(machine.usable_cores() < 2 or not quiet.TASKS.is_dir(),
                    reason="a BLAS pool needs two cores to spin beside us, and /proc to be seen")
def test_quiesce_outlasts_blas_threads_left_spinning():
    """OpenBLAS's workers spin after a threaded product (awake right after it) and quiesce waits,
    within its limit, until they sleep. Threads' states, not CPU use: with a busy neighbour a
    CPU clock read 0.75 cores after quiesce had taken a preempted spinner's quiet step for sleep.
    In a process of its own, so that no thread an earlier test started is among ours."""
    environment = {k: v for k, v in os.environ.items() if k not in SLEEPING}  # OpenBLAS's own spin
    out = subprocess.run([sys.executable, "-c", QUIESCED], capture_output=True, text=True, check=True,
                         env=environment).stdout
    assert out.split() == ["True", "True", "False"]
