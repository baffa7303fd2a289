"""One process at a time compiles each of this package's numba kernels, so that the others load it.

numba compiles a kernel's signature on its first call in every process that lacks it in its
on-disk cache, and several processes started together (``convbench ab``'s workers, a run's
``--processes``, test workers) each compile every signature they call: 30 signatures of
``kernels.numba_jit`` took about 87 CPU seconds per process on a first-generation AMD EPYC. numba
also rewrites a kernel's cache index whole on every save (``IndexDataCacheFile.save``), so two
processes saving signatures of one kernel at once can lose one's entry.

``lock_compiles(module)`` wraps numba's ``Dispatcher.compile`` so that a kernel defined in
``module`` is compiled (or loaded from the cache) under a file lock of its own, shared by every
process: the first compiles and saves, the others, waiting, then find it in the cache. One lock a
kernel, not one for the module: two processes compile different kernels at once (a kernel's
callees are compiled inside its lock, under their own locks; the calls form no cycle, so neither
do the locks). The lock is an OS lock (``filelock``), so a process that dies holding it releases
it; where no lock file can be made, a process compiles as numba would.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from filelock import FileLock


def lock_compiles(module: str, source: str) -> None:
    """Compile each numba kernel of ``module`` (whose file is ``source``) one process at a time."""
    from numba.core.dispatcher import Dispatcher

    original = Dispatcher.compile
    if getattr(original, "convbench_locked", None) == module:
        return
    tag = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:12]
    locks: dict[str, FileLock] = {}

    def compile(self, sig):
        if getattr(self.py_func, "__module__", None) != module:
            return original(self, sig)
        name = self.py_func.__qualname__
        if name not in locks:
            locks[name] = FileLock(Path(tempfile.gettempdir()) / f"convbench-numba-{tag}-{name}.lock")
        lock = locks[name]
        try:
            lock.acquire()
        except OSError:  # no lock file here: compile as numba would
            return original(self, sig)
        try:
            return original(self, sig)
        finally:
            lock.release()

    compile.convbench_locked = module
    Dispatcher.compile = compile
