"""im2col + one GEMM per group through numpy's BLAS (seed 001's method); col2im for the gradient.

``im2col`` copies every input pixel that each kernel tap meets into a column matrix of shape
(groups, C/groups * R * S, N * Ho * Wo); the convolution is then one matrix product per group
with the filters viewed as (groups, K/groups, C/groups * R * S). The backward pass reuses the
forward's column matrix for ``dw`` and scatters ``dcols`` back with ``col2im``.

Pooling copies the windows into columns too, laid out tap-major as (R*S, N, C, Ho, Wo) so that
max and mean over a window are elementwise reductions across R*S contiguous planes; the backward
pass scatters each tap's plane back, the same adjoint as ``col2im``.
"""

from __future__ import annotations

import numpy as np

from kernels._arrays import pad, quiet, scatter_taps, taps
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d
from kernels.phases import span
from kernels.traits import Traits

name = "im2col"
description = "im2col column matrix + one BLAS GEMM per group; col2im for the input gradient"
TRAITS = Traits(phases=True)


def im2col(xpad, p):
    """Column matrix of shape (C, R, S, N, Ho, Wo): cols[c, r, s, n, i, j] = xpad[n, c, i*sh + r*dh, j*sw + s*dw]."""
    cols = np.empty((p.C, p.R, p.S, p.N, p.out_h, p.out_w), dtype=xpad.dtype)
    for r, s, view in taps(xpad, p):
        cols[:, r, s] = view.transpose(1, 0, 2, 3)
    return cols


def col2im(dcols, p):
    """Adjoint of ``im2col``: sum every column entry back into its pixel, then drop the padding."""
    return scatter_taps(p, lambda r, s: dcols[:, r, s].transpose(1, 0, 2, 3))


@quiet
def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    G, Kg = p.groups, p.K // p.groups
    with span("im2col"):
        cols = im2col(pad(x, p.padding), p).reshape(G, -1, p.N * p.out_h * p.out_w)
    with span("gemm"):
        y = np.matmul(w.reshape(G, Kg, -1), cols)  # (G, Kg, N*Ho*Wo)
    y = np.ascontiguousarray(y.reshape(p.K, p.N, p.out_h, p.out_w).transpose(1, 0, 2, 3))
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, {"cols": cols, "w": w})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    cols, w = ctx.saved["cols"], ctx.saved["w"]
    G, Kg = p.groups, p.K // p.groups
    dy_g = dy.transpose(1, 0, 2, 3).reshape(G, Kg, -1)  # (G, Kg, N*Ho*Wo)
    with span("gemm"):
        dw = np.matmul(dy_g, cols.transpose(0, 2, 1)).reshape(w.shape)
    dx = None
    if need_dx:
        with span("gemm"):
            dcols = np.matmul(w.reshape(G, Kg, -1).transpose(0, 2, 1), dy_g)  # (G, Cg*R*S, N*Ho*Wo)
        with span("col2im"):
            dx = col2im(dcols.reshape(p.C, p.R, p.S, p.N, p.out_h, p.out_w), p)
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return dx, dw, db


def _pool_columns(x, p, fill: float):
    """Windows as columns in tap-major order, (R*S, N, C, Ho, Wo): one strided copy per tap. The
    reductions over the taps then run elementwise across contiguous planes already in NCHW order."""
    R, S = p.kernel_size
    cols = np.empty((R * S, p.N, p.C, p.out_h, p.out_w), dtype=x.dtype)
    for r, s, view in taps(pad(x, p.padding, fill), p):
        cols[r * S + s] = view
    return cols


def _first_max(cols, y):
    """Mask of each window's first maximum in row-major order, a NaN counting as the maximum.

    Built from elementwise comparisons of whole planes: ``argmax`` along the tap axis is a
    strided reduction that numpy runs several times slower."""
    first = (cols == y) | np.isnan(cols)  # a NaN in a window makes y NaN, equal to nothing
    seen = first[0].copy()
    for t in range(1, len(first)):
        first[t] &= ~seen
        seen |= first[t]
    return first


def _select(mask, a):
    """``np.where(mask, a, 0)`` exactly (Inf and NaN kept), by AND-ing bit patterns: several
    times faster than ``np.where`` for float planes."""
    bits = a.view(np.dtype(f"u{a.itemsize}"))
    return (bits & -mask.astype(bits.dtype)).view(a.dtype)


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    cols = _pool_columns(x, p, -np.inf)
    y = cols.max(axis=0)
    return y, Context(name, "maxpool2d", p, {"first": _first_max(cols, y)})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    first, dy, S = ctx.saved["first"], np.ascontiguousarray(dy), p.kernel_size[1]
    return scatter_taps(p, lambda r, s: _select(first[r * S + s], dy))


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = _pool_columns(x, p, 0.0).mean(axis=0)
    return y, Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    share = dy / (R * S)
    return scatter_taps(p, lambda r, s: share)
