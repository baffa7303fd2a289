"""Direct loops compiled by numba: ``@njit(parallel=True, cache=True)``.

The loops are the definition, ordered so the innermost loop runs along an output row; at
convolution stride 1 it reads and writes 1-D row slices, which LLVM vectorises (4-D indexing
with a run-time stride it does not). Each parallel iteration owns the output it
writes, so no two threads ever add into the same element:

- forward: one output row (image, output channel, row) per iteration;
- ``dx``: one row of the padded input gradient per iteration, gathering the output rows that
  reach it;
- ``dw``: one filter weight per iteration, a long sum over the batch and the output pixels that
  ``fastmath={"reassoc"}`` lets LLVM vectorise.

Rows rather than planes keep both cores busy on the seed problems, where N * K is 1 to 4.

``cache=True`` writes the compiled code next to this module, so a new process loads it instead
of compiling again. Everything is validated (``_checks``) and made contiguous before any
compiled code runs, so no input can read out of bounds.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels._arrays import crop, pad, padded_zeros
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d

name = "numba"
description = "numba @njit direct loops, parallel over output rows, vectorised at stride 1, cached compilation"


@njit(cache=True, parallel=True)
def _conv_forward(xpad, w, y, sh, sw, dil_h, dil_w, groups):
    N, K, Ho, Wo = y.shape
    _, Cg, R, S = w.shape
    Kg = K // groups
    for nki in prange(N * K * Ho):  # one output row each: both cores busy even when N * K is 1
        n, k, i = nki // (K * Ho), nki // Ho % K, nki % Ho
        c0 = (k // Kg) * Cg
        out = y[n, k, i]
        for c in range(Cg):
            for r in range(R):
                xrow = xpad[n, c0 + c, i * sh + r * dil_h]
                for s in range(S):
                    wv = w[k, c, r, s]
                    if sw == 1:  # unit stride: a 1-D slice that LLVM vectorises
                        src = xrow[s * dil_w : s * dil_w + Wo]
                        for j in range(Wo):
                            out[j] += wv * src[j]
                    else:
                        for j in range(Wo):
                            out[j] += wv * xrow[j * sw + s * dil_w]


@njit(cache=True, parallel=True)
def _conv_backward_data(dy, w, dxpad, sh, sw, dil_h, dil_w, groups):
    N, K, Ho, Wo = dy.shape
    _, Cg, R, S = w.shape
    C, Hp = dxpad.shape[1], dxpad.shape[2]
    Kg = K // groups
    for ncrow in prange(N * C * Hp):  # one padded-input row each, gathering what reaches it
        n, c, row = ncrow // (C * Hp), ncrow // Hp % C, ncrow % Hp
        k0, cc = (c // Cg) * Kg, c % Cg
        dxrow = dxpad[n, c, row]
        for r in range(R):
            top = row - r * dil_h
            if top < 0 or top % sh != 0 or top // sh >= Ho:
                continue
            i = top // sh
            for k in range(k0, k0 + Kg):
                dyrow = dy[n, k, i]
                for s in range(S):
                    wv = w[k, cc, r, s]
                    if sw == 1:
                        dst = dxrow[s * dil_w : s * dil_w + Wo]
                        for j in range(Wo):
                            dst[j] += wv * dyrow[j]
                    else:
                        for j in range(Wo):
                            dxrow[j * sw + s * dil_w] += wv * dyrow[j]


# reassoc lets LLVM vectorise the long sums (no nnan/ninf: NaN and Inf still propagate)
@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _conv_backward_weight(dy, xpad, dw_out, sh, sw, dil_h, dil_w, groups):
    N, K, Ho, Wo = dy.shape
    _, Cg, R, S = dw_out.shape
    Kg = K // groups
    for tap in prange(K * Cg * R * S):  # one filter weight each
        k, cc, r, s = tap // (Cg * R * S), tap // (R * S) % Cg, tap // S % R, tap % S
        c = (k // Kg) * Cg + cc
        acc = dw_out[k, cc, r, s]  # zero, in the output's dtype
        for n in range(N):
            for i in range(Ho):
                dyrow, xrow = dy[n, k, i], xpad[n, c, i * sh + r * dil_h]
                if sw == 1:
                    src = xrow[s * dil_w : s * dil_w + Wo]
                    for j in range(Wo):
                        acc += dyrow[j] * src[j]
                else:
                    for j in range(Wo):
                        acc += dyrow[j] * xrow[j * sw + s * dil_w]
        dw_out[k, cc, r, s] = acc


@njit(cache=True, parallel=True)
def _maxpool_forward(xpad, y, argmax, R, S, sh, sw):
    N, C, Ho, Wo = y.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                # Row-major taps, moving only on a strictly larger value: ties keep the first.
                # A NaN beats any number (as np.argmax has it), so it propagates.
                best = xpad[n, c, i * sh, j * sw]
                best_t = 0
                for r in range(R):
                    for s in range(S):
                        v = xpad[n, c, i * sh + r, j * sw + s]
                        if v > best or (v != v and best == best):
                            best = v
                            best_t = r * S + s
                y[n, c, i, j] = best
                argmax[n, c, i, j] = best_t


@njit(cache=True, parallel=True)
def _maxpool_backward(dy, argmax, dxpad, S, sh, sw):
    N, C, Ho, Wo = dy.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                t = argmax[n, c, i, j]
                dxpad[n, c, i * sh + t // S, j * sw + t % S] += dy[n, c, i, j]


@njit(cache=True, parallel=True)
def _avgpool_forward(xpad, y, R, S, sh, sw):
    N, C, Ho, Wo = y.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                total = y[n, c, i, j]  # zero, in the output's dtype
                for r in range(R):
                    for s in range(S):
                        total += xpad[n, c, i * sh + r, j * sw + s]
                y[n, c, i, j] = total / (R * S)


@njit(cache=True, parallel=True)
def _avgpool_backward(dy, dxpad, R, S, sh, sw):
    N, C, Ho, Wo = dy.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(Ho):
            for j in range(Wo):
                share = dy[n, c, i, j] / (R * S)
                for r in range(R):
                    for s in range(S):
                        dxpad[n, c, i * sh + r, j * sw + s] += share


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    xpad = pad(x, p.padding)  # np.pad returns a fresh C-contiguous array
    w = np.ascontiguousarray(w)
    y = np.zeros(p.y_shape, dtype=p.dtype)
    _conv_forward(xpad, w, y, *p.stride, *p.dilation, p.groups)
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, {"xpad": xpad, "w": w})


def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    xpad, w = ctx.saved["xpad"], ctx.saved["w"]
    dy = np.ascontiguousarray(dy)
    dx = None
    if need_dx:
        dxpad = np.zeros_like(xpad)
        _conv_backward_data(dy, w, dxpad, *p.stride, *p.dilation, p.groups)
        dx = crop(dxpad, p)
    dw = np.zeros_like(w)
    _conv_backward_weight(dy, xpad, dw, *p.stride, *p.dilation, p.groups)
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return dx, dw, db


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = np.empty(p.y_shape, dtype=p.dtype)
    argmax = np.empty(p.y_shape, dtype=np.int64)
    _maxpool_forward(pad(x, p.padding, -np.inf), y, argmax, *p.kernel_size, *p.stride)
    return y, Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    dxpad = padded_zeros(p)
    _maxpool_backward(np.ascontiguousarray(dy), ctx.saved["argmax"], dxpad, p.kernel_size[1], *p.stride)
    return crop(dxpad, p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = np.zeros(p.y_shape, dtype=p.dtype)
    _avgpool_forward(pad(x, p.padding), y, *p.kernel_size, *p.stride)
    return y, Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    dxpad = padded_zeros(p)
    _avgpool_backward(np.ascontiguousarray(dy), dxpad, *p.kernel_size, *p.stride)
    return crop(dxpad, p)
