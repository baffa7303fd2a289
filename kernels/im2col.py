"""im2col + one GEMM per group through numpy's BLAS (seed 001's method); col2im for the gradient.

``im2col`` copies every input pixel that each kernel tap meets into a column matrix of shape
(groups, C/groups * R * S, N * Ho * Wo); the convolution is then one matrix product per group
with the filters viewed as (groups, K/groups, C/groups * R * S). The backward pass reuses the
forward's column matrix for ``dw`` and scatters ``dcols`` back with ``col2im``.

Pooling uses the same column view per channel: the window's values are one column, so max and
mean are reductions along an axis, and the backward pass scatters with ``col2im``.
"""

from __future__ import annotations

import numpy as np

from kernels._arrays import crop, pad, padded_zeros
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d
from kernels._phases import span

name = "im2col"
description = "im2col column matrix + one BLAS GEMM per group; col2im for the input gradient"


def _tap(p, r: int, s: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (r, s) meets, one per output pixel."""
    (sh, sw), (dh, dw) = p.stride, getattr(p, "dilation", (1, 1))
    return (
        slice(r * dh, r * dh + sh * (p.out_h - 1) + 1, sh),
        slice(s * dw, s * dw + sw * (p.out_w - 1) + 1, sw),
    )


def _kernel(p) -> tuple[int, int]:
    return getattr(p, "kernel_size", None) or (p.R, p.S)


def im2col(xpad, p):
    """Column matrix of shape (C, R, S, N, Ho, Wo): cols[c, r, s, n, i, j] = xpad[n, c, i*sh + r*dh, j*sw + s*dw]."""
    R, S = _kernel(p)
    cols = np.empty((p.C, R, S, p.N, p.out_h, p.out_w), dtype=xpad.dtype)
    for r in range(R):
        for s in range(S):
            rows, columns = _tap(p, r, s)
            cols[:, r, s] = xpad[:, :, rows, columns].transpose(1, 0, 2, 3)
    return cols


def col2im(dcols, p):
    """Adjoint of ``im2col``: sum every column entry back into its pixel, then drop the padding."""
    R, S = _kernel(p)
    dxpad = padded_zeros(p)
    for r in range(R):
        for s in range(S):
            rows, columns = _tap(p, r, s)
            dxpad[:, :, rows, columns] += dcols[:, r, s].transpose(1, 0, 2, 3)
    return crop(dxpad, p)


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


def conv2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "conv2d")
    cols, w = ctx.saved["cols"], ctx.saved["w"]
    G, Kg = p.groups, p.K // p.groups
    dy_g = dy.transpose(1, 0, 2, 3).reshape(G, Kg, -1)  # (G, Kg, N*Ho*Wo)
    with span("gemm"):
        dw = np.matmul(dy_g, cols.transpose(0, 2, 1)).reshape(w.shape)
        dcols = np.matmul(w.reshape(G, Kg, -1).transpose(0, 2, 1), dy_g)  # (G, Cg*R*S, N*Ho*Wo)
    with span("col2im"):
        dx = col2im(dcols.reshape(p.C, p.R, p.S, p.N, p.out_h, p.out_w), p)
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return dx, dw, db


def _pool_columns(x, p, fill: float):
    """Windows as columns: (R*S, C, N, Ho, Wo) with the taps in row-major order first."""
    R, S = p.kernel_size
    cols = im2col(pad(x, p.padding, fill), p)
    return cols.transpose(1, 2, 0, 3, 4, 5).reshape(R * S, p.C, p.N, p.out_h, p.out_w)


def _to_nchw(a):
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3))


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    cols = _pool_columns(x, p, -np.inf)
    argmax = cols.argmax(axis=0)  # first maximum in row-major order; a NaN counts as the maximum
    y = np.take_along_axis(cols, argmax[None], axis=0)[0]
    return _to_nchw(y), Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    R, S = p.kernel_size
    dcols = np.zeros((R * S, p.C, p.N, p.out_h, p.out_w), dtype=p.dtype)
    np.put_along_axis(dcols, ctx.saved["argmax"][None], dy.transpose(1, 0, 2, 3)[None], axis=0)
    return col2im(dcols.reshape(R, S, p.C, p.N, p.out_h, p.out_w).transpose(2, 0, 1, 3, 4, 5), p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = _pool_columns(x, p, 0.0).mean(axis=0)
    return _to_nchw(y), Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    share = (dy / (R * S)).transpose(1, 0, 2, 3)  # (C, N, Ho, Wo)
    dcols = np.broadcast_to(share[:, None, None], (p.C, R, S, p.N, p.out_h, p.out_w))
    return col2im(dcols, p)
