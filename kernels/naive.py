"""Textbook loops: one Python iteration per output pixel, as seed articles 002 and 003 write it.

The baseline every speedup is measured against. Each output pixel is the sum of one window of
the padded input times one filter; the backward pass walks the same windows and scatters.
Arithmetic stays in the input's dtype.
"""

from __future__ import annotations

import numpy as np

from kernels._arrays import crop, pad, padded_zeros, quiet
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d
from kernels.traits import Traits

name = "naive"
description = "explicit Python loops over output pixels (seed 002); the baseline"


def _work(op, N, C, K, out_h, out_w, groups, taps) -> float:
    """One Python iteration per output element, each about 12 µs (forward and backward, AMD EPYC)
    plus about 14 ns per element of its window product (C/groups x R x S for a convolution,
    R x S for pooling): iterations weighted so, in units of an iteration on a tiny window.
    ResNet-18's layer4_conv_s2 at batch 1 has 25,088 iterations of 2,304 elements: 1.1 s a call."""
    elements = C // groups * taps if op == "conv2d" else taps
    return N * K * out_h * out_w * (1 + elements / 900)


# worth timing repeatedly up to about 50,000 tiny iterations: 0.6 s a forward+backward call
TRAITS = Traits(baseline=True, work=_work, work_limit=50_000)


def _window(p, i: int, j: int, dilation=(1, 1), size=None) -> tuple[slice, slice]:
    """Rows and columns of the padded input that output pixel (i, j) reads."""
    R, S = size or (p.R, p.S)
    (sh, sw), (dh, dw) = p.stride, dilation
    return (
        slice(i * sh, i * sh + dh * (R - 1) + 1, dh),
        slice(j * sw, j * sw + dw * (S - 1) + 1, dw),
    )


@quiet
def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    xpad = pad(x, p.padding)
    Cg, Kg = p.C // p.groups, p.K // p.groups
    y = np.empty(p.y_shape, dtype=p.dtype)
    for n in range(p.N):
        for k in range(p.K):
            cin = slice(k // Kg * Cg, (k // Kg + 1) * Cg)
            for i in range(p.out_h):
                for j in range(p.out_w):
                    rows, cols = _window(p, i, j, p.dilation)
                    y[n, k, i, j] = np.sum(xpad[n, cin, rows, cols] * w[k])
            if b is not None:
                y[n, k] += b[k]
    return y, Context(name, "conv2d", p, {"xpad": xpad, "w": w})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    xpad, w = ctx.saved["xpad"], ctx.saved["w"]
    Cg, Kg = p.C // p.groups, p.K // p.groups
    dxpad = np.zeros_like(xpad)
    dw = np.zeros(w.shape, dtype=p.dtype)
    for n in range(p.N):
        for k in range(p.K):
            cin = slice(k // Kg * Cg, (k // Kg + 1) * Cg)
            for i in range(p.out_h):
                for j in range(p.out_w):
                    rows, cols = _window(p, i, j, p.dilation)
                    if need_dx:
                        dxpad[n, cin, rows, cols] += dy[n, k, i, j] * w[k]
                    dw[k] += dy[n, k, i, j] * xpad[n, cin, rows, cols]
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return crop(dxpad, p) if need_dx else None, dw, db


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    xpad = pad(x, p.padding, -np.inf)
    y = np.empty(p.y_shape, dtype=p.dtype)
    argmax = np.empty(p.y_shape, dtype=np.int64)
    for n in range(p.N):
        for c in range(p.C):
            for i in range(p.out_h):
                for j in range(p.out_w):
                    window = xpad[n, c][_window(p, i, j, size=p.kernel_size)]
                    # np.argmax returns the first maximum in row-major order (a NaN counts as
                    # the maximum), which is the interface's tie rule.
                    argmax[n, c, i, j] = np.argmax(window)
                    y[n, c, i, j] = window.flat[argmax[n, c, i, j]]
    return y, Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    argmax = ctx.saved["argmax"]
    (sh, sw), S = p.stride, p.kernel_size[1]
    dxpad = padded_zeros(p)
    for n in range(p.N):
        for c in range(p.C):
            for i in range(p.out_h):
                for j in range(p.out_w):
                    r, s = divmod(int(argmax[n, c, i, j]), S)
                    dxpad[n, c, i * sh + r, j * sw + s] += dy[n, c, i, j]
    return crop(dxpad, p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    xpad = pad(x, p.padding)
    y = np.empty(p.y_shape, dtype=p.dtype)
    for n in range(p.N):
        for c in range(p.C):
            for i in range(p.out_h):
                for j in range(p.out_w):
                    y[n, c, i, j] = np.mean(xpad[n, c][_window(p, i, j, size=p.kernel_size)])
    return y, Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    dxpad = padded_zeros(p)
    for n in range(p.N):
        for c in range(p.C):
            for i in range(p.out_h):
                for j in range(p.out_w):
                    dxpad[n, c][_window(p, i, j, size=p.kernel_size)] += dy[n, c, i, j] / (R * S)
    return crop(dxpad, p)
