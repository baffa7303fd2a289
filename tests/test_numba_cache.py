"""Processes started together compile a numba kernel once: the others wait and load it from the
cache (kernels.numba_cache), instead of each compiling every signature it calls."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("numba")
pytestmark = pytest.mark.subprocess

KERNEL = """
import numba
from kernels.numba_cache import lock_compiles

lock_compiles(__name__, __file__)


@numba.njit(cache=True)
def kernel(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
"""

CALLER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import kernel_module
start = float(sys.argv[2])
while time.time() < start:  # both processes call at once
    time.sleep(0.001)
kernel_module.kernel(10)
stats = kernel_module.kernel.stats
print(len(stats.cache_misses), len(stats.cache_hits))
"""


def test_two_processes_calling_a_new_signature_at_once_compile_it_once(tmp_path):
    (tmp_path / "kernel_module.py").write_text(textwrap.dedent(KERNEL))
    start = str(time.time() + 3)  # after both have imported numba
    processes = [subprocess.Popen([sys.executable, "-c", CALLER, str(tmp_path), start], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    misses, hits = zip(*(map(int, out.split()) for out, _ in outputs))
    assert sorted(misses) == [0, 1] and sorted(hits) == [0, 1]  # one compiled and saved; the other loaded it
