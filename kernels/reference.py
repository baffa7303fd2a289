"""The float64 reference: the interface's definitions written out, for clarity and not speed.

Every backend is checked against this module, and this module's backward pass is checked
against central finite differences. It shares no code with any backend (only the argument
validation of ``_checks``). It computes in float64 whatever the input dtype, and returns the
input's dtype as the interface requires.

The formulation is shift-and-add: for each kernel tap (r, s), the taps' input pixels
``xpad[n, c, i*sh + r*dh, j*sw + s*dw]`` for all output positions (i, j) form one strided slice,
so the definition's sum over (c, r, s) becomes a loop over (r, s) and a sum over c.
"""

from __future__ import annotations

import numpy as np

from kernels._checks import Context, check_backward, check_conv2d, check_pool2d, padded_size

name = "reference"
description = "float64 shift-and-add written from the definition; the ground truth"


def _tap(p, r: int, s: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (r, s) meets, one per output pixel."""
    dh, dw = getattr(p, "dilation", (1, 1))
    sh, sw = p.stride
    rows = slice(r * dh, r * dh + sh * (p.out_h - 1) + 1, sh)
    cols = slice(s * dw, s * dw + sw * (p.out_w - 1) + 1, sw)
    return rows, cols


def _pad(x, padding, value: float = 0.0):
    """x in float64 with (top, bottom, left, right) rows and columns of ``value`` around it."""
    top, bottom, left, right = padding
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _padded_zeros(p):
    return np.zeros((p.N, p.C, *padded_size(p)))


def _unpad(xpad, p):
    top, _, left, _ = p.padding
    return xpad[:, :, top : top + p.H, left : left + p.W].astype(p.dtype)


def _contract(subscripts: str, a, b):
    """``np.einsum`` of a slice of activations and a matrix of channels (axis 1 of each): the same
    sums in another order. With 64 channels or more on both sides BLAS does them (``optimize``):
    3.6 s -> 0.46 s for ResNet-18's layer4 3x3 convolution at batch 8, forward and backward (AMD
    EPYC, 2 threads); with fewer, einsum's own loops are as quick or quicker (a 3-channel 7x7 first layer)."""
    return np.einsum(subscripts, a, b, optimize=min(a.shape[1], b.shape[1]) >= 64)


def _group(p, g: int) -> tuple[slice, slice]:
    """Input channels and output channels of group g."""
    Cg, Kg = p.C // p.groups, p.K // p.groups
    return slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    xpad = _pad(x, p.padding)
    w64 = w.astype(np.float64)
    y = np.zeros(p.y_shape)
    for g in range(p.groups):
        cin, cout = _group(p, g)
        for r in range(p.R):
            for s in range(p.S):
                rows, cols = _tap(p, r, s)
                y[:, cout] += _contract("nchw,kc->nkhw", xpad[:, cin, rows, cols], w64[cout, :, r, s])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y.astype(p.dtype), Context(name, "conv2d", p, {"xpad": xpad, "w": w64})


def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    xpad, w64 = ctx.saved["xpad"], ctx.saved["w"]
    dy64 = dy.astype(np.float64)
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w64)
    for g in range(p.groups):
        cin, cout = _group(p, g)
        for r in range(p.R):
            for s in range(p.S):
                rows, cols = _tap(p, r, s)
                dw[cout, :, r, s] = _contract("nkhw,nchw->kc", dy64[:, cout], xpad[:, cin, rows, cols])
                if need_dx:
                    dxpad[:, cin, rows, cols] += _contract("nkhw,kc->nchw", dy64[:, cout], w64[cout, :, r, s])
    db = dy64.sum(axis=(0, 2, 3)).astype(p.dtype) if p.has_bias else None
    return _unpad(dxpad, p) if need_dx else None, dw.astype(p.dtype), db


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    xpad = _pad(x, p.padding, -np.inf)
    R, S = p.kernel_size
    # Visit taps in row-major order and move only on a strictly larger value, so ties keep the
    # first position. A NaN beats any number (as np.argmax has it), so it propagates.
    y = xpad[(slice(None), slice(None), *_tap(p, 0, 0))].copy()
    argmax = np.zeros(p.y_shape, dtype=np.int64)
    for r in range(R):
        for s in range(S):
            v = xpad[(slice(None), slice(None), *_tap(p, r, s))]
            better = (v > y) | (np.isnan(v) & ~np.isnan(y))
            y = np.where(better, v, y)
            argmax = np.where(better, r * S + s, argmax)
    return y.astype(p.dtype), Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    argmax = ctx.saved["argmax"]
    R, S = p.kernel_size
    dxpad = _padded_zeros(p)
    for r in range(R):
        for s in range(S):
            tap = (slice(None), slice(None), *_tap(p, r, s))
            dxpad[tap] += np.where(argmax == r * S + s, dy.astype(np.float64), 0.0)
    return _unpad(dxpad, p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    xpad = _pad(x, p.padding)
    R, S = p.kernel_size
    y = np.zeros(p.y_shape)
    for r in range(R):
        for s in range(S):
            y += xpad[(slice(None), slice(None), *_tap(p, r, s))]
    # count_include_pad: the divisor is the whole window, padding included.
    return (y / (R * S)).astype(p.dtype), Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    dxpad = _padded_zeros(p)
    for r in range(R):
        for s in range(S):
            dxpad[(slice(None), slice(None), *_tap(p, r, s))] += dy.astype(np.float64) / (R * S)
    return _unpad(dxpad, p)
