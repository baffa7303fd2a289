"""A backend made slower on purpose, to check that the harness catches a real slowdown.

``slow_down(module, fraction)`` wraps the six kernel functions of a backend module so that each
call, after it returns, spins for ``fraction`` of its own time: a 1.25x slower kernel for
``fraction=0.25``, whatever the machine's speed. Run as a script it writes that wrapper into a
temporary copy of ``kernels`` and runs the ``convbench`` command line with that copy first on
``PYTHONPATH``, so that the worker processes a run measures in (``--processes``) are slowed too::

    python tests/slowed.py im2col 0.25 run --suite seeds --backends im2col,numba --out B

For ``convbench ab``, which needs the slowdown in a commit, ``--write FILE FRACTION`` appends the
same wrapper to a backend's module (on a scratch branch: never commit it to main)::

    python tests/slowed.py --write kernels/im2col.py 0.25
"""

from __future__ import annotations

import functools
import sys
import time

FUNCTIONS = ("conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
             "avgpool2d_forward", "avgpool2d_backward")


def _spinning(fn, fraction: float):
    @functools.wraps(fn)
    def slower(*args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        until = time.perf_counter() + fraction * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return result
    return slower


def slow_down(module, fraction: float) -> None:
    for name in FUNCTIONS:
        setattr(module, name, _spinning(getattr(module, name), fraction))


WRITTEN = """

# scratch branch only: every call {factor}x slower (it spins for {fraction} of its own time)
def _spinning(fn):
    import time

    def slower(*args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        until = time.perf_counter() + {fraction} * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return result
    return slower


for _name in {functions!r}:
    globals()[_name] = _spinning(globals()[_name])
"""


def write(path, fraction: float) -> None:
    """Append the wrapper to the backend module at ``path``: every call ``1 + fraction`` times slower."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(WRITTEN.format(factor=1 + fraction, fraction=fraction, functions=FUNCTIONS))


def slowed_env(backend: str, fraction: float, tmp: str) -> dict:
    """The environment under which every Python process (a run's worker processes too) imports a
    copy of ``kernels``, written into ``tmp``, whose ``backend`` is ``1 + fraction`` times slower.
    PYTHONSAFEPATH keeps ``python -m`` from putting the working directory, which may hold the
    real ``kernels``, ahead of the copy (Python 3.11 and later)."""
    import os
    import shutil
    from pathlib import Path

    import kernels

    module = Path(kernels.get(backend).__file__)
    copy = Path(tmp) / "kernels"
    shutil.copytree(module.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    write(copy / module.name, fraction)
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONSAFEPATH": "1"}


if __name__ == "__main__":
    import subprocess
    import tempfile

    if sys.argv[1:2] == ["--write"]:
        write(sys.argv[2], float(sys.argv[3]))
        sys.exit(0)
    if sys.version_info < (3, 11):
        sys.exit("slowed.py needs Python 3.11 or later (PYTHONSAFEPATH)")
    backend, fraction, *argv = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        env = slowed_env(backend, float(fraction), tmp)
        sys.exit(subprocess.call([sys.executable, "-m", "convbench", *argv], env=env))
