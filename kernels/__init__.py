"""Interchangeable CPU backends for 2-D convolution and pooling, forward and backward.

Every backend is one module with the same six functions (see ``INTERFACE.md`` in the design
notes, and the README); this file is the registry that names them::

    import kernels
    be = kernels.get("im2col")
    y, ctx = be.conv2d_forward(x, w, b, stride=1, padding=1)
    dx, dw, db = be.conv2d_backward(dy, ctx)

``kernels.reference`` is the float64 reference that every backend is verified against.
Backend modules are imported only when asked for, so ``import kernels`` is fast and works
without the optional dependencies of any one backend (numba).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from kernels import reference
from kernels._checks import ShapeError

__all__ = ["Backend", "BackendUnavailable", "ShapeError", "available", "get", "names", "reference", "yardsticks"]

# name -> module. Adding a backend is one module plus one line here.
_REGISTRY: dict[str, str] = {
    "naive": "kernels.naive",
    "scipy": "kernels.scipy_signal",
    "im2col": "kernels.im2col",
    "stride_tricks": "kernels.stride_tricks",
    "numba": "kernels.numba_jit",
    "auto": "kernels.auto",
}
# Outside yardsticks: optional, never required, not in names().
_YARDSTICKS: dict[str, str] = {
    "torch": "kernels.torch_yardstick",
}


class BackendUnavailable(ImportError):
    """A registered backend that cannot be loaded here (for example numba is not installed)."""


@runtime_checkable
class Backend(Protocol):
    """What every backend module provides: a name, a one-line description and six functions."""

    name: str
    description: str

    def conv2d_forward(self, x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1) -> Any: ...
    def conv2d_backward(self, dy, ctx) -> Any: ...
    def maxpool2d_forward(self, x, kernel_size, *, stride=None, padding=0) -> Any: ...
    def maxpool2d_backward(self, dy, ctx) -> Any: ...
    def avgpool2d_forward(self, x, kernel_size, *, stride=None, padding=0) -> Any: ...
    def avgpool2d_backward(self, dy, ctx) -> Any: ...


def names() -> tuple[str, ...]:
    """Every registered backend, in canonical order (available or not)."""
    return tuple(_REGISTRY)


def yardsticks() -> tuple[str, ...]:
    """Outside yardsticks (PyTorch) that ``get`` also serves where they are installed."""
    return tuple(_YARDSTICKS)


def _load(name: str) -> ModuleType:
    module = _REGISTRY.get(name) or _YARDSTICKS.get(name)
    if module is None:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(_REGISTRY)} "
                         f"(or the yardstick {', '.join(_YARDSTICKS)})")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is unavailable: {exc}") from exc


def get(name: str) -> Backend:
    """Return the backend called ``name``.

    Raises
    ------
    ValueError
        ``name`` is not a registered backend; the message lists the valid names.
    BackendUnavailable
        The backend is registered but cannot load here; the message says why.
    """
    return _load(name)


def available(include_yardsticks: bool = False) -> dict[str, str | None]:
    """Map every backend name (and yardstick, if asked) to None if usable here, else a one-line reason."""
    reasons: dict[str, str | None] = {}
    for name in [*_REGISTRY, *(_YARDSTICKS if include_yardsticks else ())]:
        try:
            _load(name)
            reasons[name] = None
        except BackendUnavailable as exc:
            reasons[name] = str(exc)
    return reasons
