"""Opt-in phase timing for backends whose work has distinct phases (im2col packing vs GEMM...).

Off by default, when ``span(name)`` returns one shared do-nothing context manager: a global
lookup and a call per phase, nothing recorded. The harness turns recording on around one
extra call with ``record()`` and reads the seconds spent in each phase::

    with phases.record() as seconds:
        be.conv2d_forward(x, w)
    seconds  # {'im2col': 0.0012, 'gemm': 0.0031}
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

_seconds: dict[str, float] | None = None
_OFF = nullcontext()


class _Span:
    __slots__ = ("name", "start")

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        _seconds[self.name] = _seconds.get(self.name, 0.0) + time.perf_counter() - self.start


def span(name: str):
    """Time the block as phase ``name`` while recording is on; do nothing otherwise."""
    return _OFF if _seconds is None else _Span(name)


@contextmanager
def record() -> Iterator[dict[str, float]]:
    """Record phase times inside the block into the dict it yields."""
    global _seconds
    previous, _seconds = _seconds, {}
    try:
        yield _seconds
    finally:
        _seconds = previous
