"""Compile numba's kernels for one dtype into their on-disk cache, before a test session's workers
start (tests/conftest.py runs it once per dtype, the two at once): otherwise each pytest-xdist
worker compiles the kernels it meets for itself (about 90 s of a core for all of them on a
first-generation EPYC), and two processes that save one kernel's signatures at the same moment
can lose one of them from numba's index, which each rewrites whole (numba.core.caching).

    python tests/numba_warm.py float32 LOCKFILE

Every kernel the tests reach: the grid's cases in every variant, read-only (as the tests pass
them) and writeable (as the harness does), and pooling. The processes save under one file lock
(LOCKFILE), so neither loses the other's entries.
"""

from __future__ import annotations

import sys

import numpy as np
from filelock import FileLock
from numba.core import caching

from cases import CONV_CASES, POOL_CASES, conv_inputs, pool_inputs
from kernels import numba_jit


def warm(dtype, lock: FileLock) -> None:
    save = caching.IndexDataCacheFile.save

    def locked_save(self, key, data):  # the index read, extended and written by one process at a time
        with lock:
            save(self, key, data)

    caching.IndexDataCacheFile.save = locked_save
    for variant in ("auto", *numba_jit.VARIANTS):
        numba_jit.VARIANT = variant
        for case in CONV_CASES:
            x, w, b, dy = conv_inputs(case, dtype)
            for inputs in ((x, w, b, dy), (x.copy(), w.copy(), None if b is None else b.copy(), dy.copy())):
                _, ctx = numba_jit.conv2d_forward(*inputs[:3], **case.params)
                numba_jit.conv2d_backward(inputs[3], ctx)
    for case in POOL_CASES:
        for op in ("maxpool2d", "avgpool2d"):
            x, dy = pool_inputs(case, op, dtype)
            _, ctx = getattr(numba_jit, f"{op}_forward")(x, case.kernel_size, **case.params)
            getattr(numba_jit, f"{op}_backward")(dy, ctx)


if __name__ == "__main__":
    warm(np.dtype(sys.argv[1]), FileLock(sys.argv[2]))
