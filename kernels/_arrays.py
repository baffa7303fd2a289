"""Helpers shared by the backends (not by the reference, which keeps its own): padding, the
kernel taps, and the definition's own sums for inputs that hold NaN or Inf."""

from __future__ import annotations

import math

import numpy as np

from kernels._checks import padded_size

# NaN in, NaN out is the documented behaviour (INTERFACE.md), so a kernel's floating-point
# warnings are silenced where its arithmetic raises them. As a decorator: about 0.7 µs a call.
quiet = np.errstate(all="ignore")


def finite(*arrays) -> bool:
    """True when no array holds a NaN or an Inf (None counts as finite)."""
    return all(a is None or np.isfinite(a).all() for a in arrays)


def finite_pair(a, b) -> bool:
    """True when ``a`` and ``b`` (of one size) hold no NaN or Inf, told by their dot product: a NaN
    or Inf in either makes it NaN or Inf (an overflow makes it Inf too, a false alarm that costs
    only time). About 0.9 µs on small arrays, against 3 µs for np.isfinite."""
    return math.isfinite(np.vdot(a, b))


def pad(x, padding: tuple[int, int, int, int], value: float = 0.0):
    """A fresh C-contiguous copy of x (N, C, H, W) with rows and columns of ``value`` around it:
    ``padding`` is (top, bottom, left, right).

    Written out rather than ``np.pad``, whose generality costs about 40 µs a call: more than a
    whole tiny convolution."""
    top, bottom, left, right = padding
    N, C, H, W = x.shape
    out = np.empty((N, C, H + top + bottom, W + left + right), dtype=x.dtype)
    out[:, :, top : top + H, left : left + W] = x
    if top or bottom:  # each empty slice assigned would still cost about half a microsecond
        out[:, :, :top] = value
        out[:, :, top + H :] = value
    if left or right:
        out[:, :, top : top + H, :left] = value
        out[:, :, top : top + H, left + W :] = value
    return out


def padded_zeros(p):
    """Zeros shaped like the padded input of problem ``p``, in its dtype."""
    return np.zeros((p.N, p.C, *padded_size(p)), dtype=p.dtype)


def crop(xpad, p):
    """The unpadded part of a padded-input gradient, as a fresh array: ``xpad`` itself where it
    has no padding (every caller passes an array of its own call; copying it cost LeNet-5's max
    pooling backward a third of its time)."""
    if xpad.shape[2:] == (p.H, p.W):
        return xpad
    top, _, left, _ = p.padding
    return xpad[:, :, top : top + p.H, left : left + p.W].copy()


def taps(a, p):
    """For each kernel tap (r, s) of problem ``p`` (conv or pool), in row-major order: (r, s, the
    view of the padded array ``a`` that the tap meets, one element per output pixel), that is
    view[n, c, i, j] = a[n, c, i*sh + r*dh, j*sw + s*dw]."""
    R, S = getattr(p, "kernel_size", None) or (p.R, p.S)
    (sh, sw), (dh, dw) = p.stride, getattr(p, "dilation", (1, 1))
    for r in range(R):
        for s in range(S):
            rows = slice(r * dh, r * dh + sh * (p.out_h - 1) + 1, sh)
            columns = slice(s * dw, s * dw + sw * (p.out_w - 1) + 1, sw)
            yield r, s, a[:, :, rows, columns]


def scatter_taps(p, plane):
    """The adjoint of reading through ``taps``: add ``plane(r, s)``, tap (r, s)'s gradient (one
    element per output pixel), into the padded pixels the tap read, then drop the padding."""
    dxpad = padded_zeros(p)
    for r, s, view in taps(dxpad, p):
        view += plane(r, s)
    return crop(dxpad, p)


# The definition's sums tap by tap, multiplying only what the definition multiplies. A backend
# whose fast formulation also multiplies zeros of its own (a stride's or a dilation's gaps, a
# 'full' correlation's border) is exact for finite inputs, where those products are zero, and
# takes these for inputs that hold NaN or Inf, where they would be NaN.

def _grouped(p, dy=None, w=None):
    G = p.groups
    dy_g = None if dy is None else dy.reshape(p.N, G, p.K // G, p.out_h, p.out_w)
    w_g = None if w is None else w.reshape(G, p.K // G, p.C // G, p.R, p.S)
    return dy_g, w_g


def _tap_view(view, p):
    return view.reshape(p.N, p.groups, p.C // p.groups, p.out_h, p.out_w)


def tap_forward(xpad, w, p):
    """The convolution without bias, shape ``p.y_shape``."""
    _, w_g = _grouped(p, w=w)
    y = np.zeros((p.N, p.groups, p.K // p.groups, p.out_h, p.out_w), dtype=p.dtype)
    for r, s, view in taps(xpad, p):
        y += np.einsum("ngchw,gkc->ngkhw", _tap_view(view, p), w_g[..., r, s])
    return y.reshape(p.y_shape)


def tap_input_gradient(dy, w, p):
    dy_g, w_g = _grouped(p, dy, w)
    return scatter_taps(p, lambda r, s: np.einsum("ngkhw,gkc->ngchw", dy_g, w_g[..., r, s]).reshape(
        p.N, p.C, p.out_h, p.out_w))


def tap_weight_gradient(xpad, dy, p):
    dy_g, _ = _grouped(p, dy)
    dw = np.empty((p.groups, p.K // p.groups, p.C // p.groups, p.R, p.S), dtype=p.dtype)
    for r, s, view in taps(xpad, p):
        dw[..., r, s] = np.einsum("ngkhw,ngchw->gkc", dy_g, _tap_view(view, p))
    return dw.reshape(p.K, p.C // p.groups, p.R, p.S)
