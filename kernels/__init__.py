"""Interchangeable CPU backends for 2-D convolution and pooling, forward and backward.

Every backend is one module with the same six functions (see ``INTERFACE.md`` in the design
notes, and the README); this file is the registry that names them::

    import kernels
    be = kernels.get("im2col")
    y, ctx = be.conv2d_forward(x, w, b, stride=1, padding=1)
    dx, dw, db = be.conv2d_backward(dy, ctx)    # need_dx=False: dx is None, not computed

``kernels.reference`` is the float64 reference that every backend is verified against.
Backend modules are imported only when asked for, so ``import kernels`` is fast and works
without the optional dependencies of any one backend (numba).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from kernels import reference
from kernels._checks import Context, ShapeError, output_size
from kernels.traits import Traits

__all__ = ["Backend", "BackendUnavailable", "ShapeError", "Traits", "available", "get", "names", "output_size",
           "reference", "traits", "yardsticks"]

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
# How to install them: the version is pinned once, in pyproject.toml's `yardstick` extra.
YARDSTICK_INSTALL = 'pip install -e ".[yardstick]"'


def __getattr__(name: str) -> ModuleType:
    """``kernels.auto``, ``kernels.numba_jit`` ...: a backend's module, imported on first use, so
    that ``import kernels; kernels.auto.picks()`` works as it reads (PEP 562)."""
    module = f"kernels.{name}"
    if module in (*_REGISTRY.values(), *_YARDSTICKS.values()):
        return importlib.import_module(module)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")


class BackendUnavailable(ImportError):
    """A registered backend that cannot be loaded here (for example numba is not installed)."""


IntPair = int | tuple[int, int]  # one value for both spatial dimensions, or (h, w)
Padding = IntPair | tuple[int, int, int, int]  # or (top, bottom, left, right)


@runtime_checkable
class Backend(Protocol):
    """What every backend module provides: ``name``, a one-line ``description`` and six functions.

    Shapes, stated once: ``x`` is (N, C, H, W); a conv's ``w`` is (K, C // groups, R, S) and
    ``b`` (K,) or None; a conv's output is (N, K, Ho, Wo) and a pool's (N, C, Ho, Wo), with
    ``Ho = (H + top + bottom - dh*(R-1) - 1) // sh + 1`` (``output_size``; likewise ``Wo``; a pool has
    dh = 1 and (R, S) = ``kernel_size``). ``dy`` has the output's shape and every gradient its
    input's. Arrays are float32 or float64, all of one dtype; results are fresh arrays of it.
    Bad shapes raise ``ShapeError`` naming the argument, other dtypes ``TypeError``; a stride,
    padding, dilation, window or ``groups`` above 2**31 - 1 is a bad shape too. The full
    contract, with the NaN/Inf and tie rules, is the interface document (INTERFACE.md).
    """

    name: str
    description: str

    def conv2d_forward(self, x: NDArray[np.floating], w: NDArray[np.floating], b: NDArray[np.floating] | None = None,
                       *, stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
                       groups: int = 1) -> tuple[NDArray[np.floating], Context]:
        """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

        Parameters
        ----------
        x : (N, C, H, W) array
        w : (K, C // groups, R, S) array
        b : (K,) array or None
        stride, dilation : int or (h, w)
        padding : int, (h, w) or (top, bottom, left, right)
            Zeros around x: the same on both sides of an axis, or each side its own.
        groups : int
            Divides both C and K; ``groups == C == K`` is a depthwise convolution.

        Returns
        -------
        y : (N, K, Ho, Wo) array
            ``y[n, k, i, j] = b[k] + sum over c in k's group, r, s of
            w[k, c', r, s] * xpad[n, c, i*sh + r*dh, j*sw + s*dw]``.
        ctx : Context
            What the backward pass needs; pass it to ``conv2d_backward`` of the same backend.
        """

    def conv2d_backward(self, dy: NDArray[np.floating], ctx: Context, *, need_dx: bool = True) -> tuple[
            NDArray[np.floating] | None, NDArray[np.floating], NDArray[np.floating] | None]:
        """Gradients of ``conv2d_forward``.

        Parameters
        ----------
        dy : (N, K, Ho, Wo) array
        ctx : Context
            From ``conv2d_forward`` of this backend.
        need_dx : bool
            False asks for no input gradient (a network's first layer has no use for it): ``dx``
            is then None and is not computed; ``dw`` and ``db`` are unchanged.

        Returns
        -------
        dx : (N, C, H, W) array, or None when ``need_dx`` is False
        dw : (K, C // groups, R, S) array
        db : (K,) array, or None when the forward pass had ``b=None``
        """

    def maxpool2d_forward(self, x: NDArray[np.floating], kernel_size: IntPair, *, stride: IntPair | None = None,
                          padding: Padding = 0) -> tuple[NDArray[np.floating], Context]:
        """Max pooling of ``x`` (N, C, H, W) over ``kernel_size`` windows.

        ``kernel_size`` and ``stride`` are an int or (h, w); ``stride=None`` is the window;
        ``padding`` is an int, (h, w) or (top, bottom, left, right), of -inf, each side at most
        half the window. Returns ``y`` (N, C, Ho, Wo) and
        the ``Context`` for ``maxpool2d_backward``.
        """

    def maxpool2d_backward(self, dy: NDArray[np.floating], ctx: Context) -> NDArray[np.floating]:
        """``dx`` (N, C, H, W) from ``dy`` (N, C, Ho, Wo): each window's gradient goes to the first
        of its maxima in row-major order (a NaN wins); overlapping windows accumulate."""

    def avgpool2d_forward(self, x: NDArray[np.floating], kernel_size: IntPair, *, stride: IntPair | None = None,
                          padding: Padding = 0) -> tuple[NDArray[np.floating], Context]:
        """Average pooling, with the arguments and results of ``maxpool2d_forward``; the padding
        is zeros and counts in the divisor (``count_include_pad=True`` in PyTorch terms)."""

    def avgpool2d_backward(self, dy: NDArray[np.floating], ctx: Context) -> NDArray[np.floating]:
        """``dx`` (N, C, H, W) from ``dy`` (N, C, Ho, Wo): each window's gradient spread evenly."""


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


def traits(name: str) -> Traits:
    """What backend ``name`` declares about itself (``TRAITS`` in its module; the defaults where
    it declares nothing, or cannot load here). Raises ValueError for an unknown name."""
    try:
        return getattr(_load(name), "TRAITS", Traits())
    except BackendUnavailable:
        return Traits()


def available(include_yardsticks: bool = False) -> dict[str, str | None]:
    """Map every backend name (and yardstick, if asked) to None if usable here, else a one-line reason."""
    reasons: dict[str, str | None] = {}
    for name in [*_REGISTRY, *(_YARDSTICKS if include_yardsticks else ())]:
        try:
            _load(name)
            reasons[name] = None
        except BackendUnavailable as exc:
            reasons[name] = str(exc.__cause__ or exc)  # the why, not "backend 'x' is unavailable" again
    return reasons
