"""Thread pools that sleep as soon as their work is done, for the whole test session (set by
tests/conftest.py, inherited by every worker and subprocess).

OpenBLAS spins about 0.1 s after a threaded call by default, numba's OpenMP pool for its spin
count. The tests report no timing, and on a machine with as many cores as xdist workers, one
worker's pools left spinning take the cores the other works on (and every quiesce waits them
out). 4 is OpenBLAS's least: 2**4 cycles.
"""

SLEEPING = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}
