"""scipy.signal correlations per image-channel plane (seed 000's method), pooling by scipy.ndimage.

Forward: each output plane is the sum over its group's input channels of a 'valid'
``correlate2d`` of the padded plane with the dilated filter (zeros between taps), kept at every
stride-th position. Backward, with ``dy_up`` the output gradient spread back out to stride
spacing (zeros between):

- ``dx``: a 'full' ``convolve2d`` of ``dy_up`` with the dilated filter (a transposed convolution);
- ``dw``: a 'valid' ``correlate2d`` of the padded input with ``dy_up``, kept at every
  dilation-th offset.

The correlations are direct sums (never FFT), so integer-valued inputs give exact results.
The zeros between taps and the 'full' correlation's border are products the definition does not
have: exact zeros for finite inputs, but NaN against an Inf. Where a NaN or Inf would meet them
(``x`` or ``w`` when dilated; ``w``, ``dy``, or ``x`` when strided, in the backward pass)
the call takes the definition's sums tap by tap instead (``kernels._arrays``). Average pooling
sums each window directly (``ndimage.correlate1d`` with ones): a running sum would carry a NaN,
an Inf or the rounding of a huge value along the rest of the row.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from kernels._arrays import (
    crop,
    finite,
    finite_pair,
    pad,
    quiet,
    tap_forward,
    tap_input_gradient,
    tap_weight_gradient,
    taps,
)
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d
from kernels.traits import Traits

name = "scipy"
description = "scipy.signal.correlate2d per image-channel plane; pooling with scipy.ndimage filters"
# One correlate2d call per (image, output channel, input channel) plane: up to about 2,000 of them.
TRAITS = Traits(work=lambda op, N, C, K, out_h, out_w, groups: N * K * (C // groups) if op == "conv2d" else 0,
                work_limit=2_000)


def _spread(a, step: tuple[int, int]):
    """Place a[..., i, j] at [..., i*step_h, j*step_w] of a zero array (zeros between)."""
    h, w = a.shape[-2:]
    out = np.zeros((*a.shape[:-2], step[0] * (h - 1) + 1, step[1] * (w - 1) + 1), dtype=a.dtype)
    out[..., :: step[0], :: step[1]] = a
    return out


@quiet
def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    xpad = pad(x, p.padding)
    w_dilated = _spread(w, p.dilation)
    Cg, Kg = p.C // p.groups, p.K // p.groups
    sh, sw = p.stride
    if p.dilation != (1, 1) and not finite(x, w):
        y = tap_forward(xpad, w, p)
    else:
        y = np.empty(p.y_shape, dtype=p.dtype)
        for n in range(p.N):
            for k in range(p.K):
                c0 = k // Kg * Cg
                y[n, k] = sum(
                    signal.correlate2d(xpad[n, c0 + c], w_dilated[k, c], mode="valid")
                    for c in range(Cg)
                )[::sh, ::sw]
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, {"xpad": xpad, "w_dilated": w_dilated})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    xpad, w_dilated = ctx.saved["xpad"], ctx.saved["w_dilated"]
    Cg, Kg = p.C // p.groups, p.K // p.groups
    dh, dw_ = p.dilation
    dy_up = _spread(dy, p.stride)
    full_h = dy_up.shape[2] + w_dilated.shape[2] - 1  # rows of a 'full' convolution, <= padded H
    full_w = dy_up.shape[3] + w_dilated.shape[3] - 1
    dxpad = np.zeros_like(xpad) if need_dx else None
    dw = np.empty((p.K, Cg, p.R, p.S), dtype=p.dtype)
    for k in range(p.K):
        c0 = k // Kg * Cg
        for c in range(Cg):
            dw_plane = 0
            for n in range(p.N):
                if need_dx:
                    dxpad[n, c0 + c, :full_h, :full_w] += signal.convolve2d(
                        dy_up[n, k], w_dilated[k, c], mode="full"
                    )
                dw_plane = dw_plane + signal.correlate2d(xpad[n, c0 + c], dy_up[n, k], mode="valid")
            dw[k, c] = dw_plane[: dh * (p.R - 1) + 1 : dh, : dw_ * (p.S - 1) + 1 : dw_]
    dx = crop(dxpad, p) if need_dx else None
    w = w_dilated[:, :, ::dh, ::dw_]
    # dw holds a NaN or Inf wherever dy does, and wherever an x met the stride's zeros, so dw and
    # w (two small arrays, one check) tell whether the sums above met a zero of their own.
    if not finite_pair(dw, w):
        dx = tap_input_gradient(dy, w, p) if need_dx else None
        dw = tap_weight_gradient(xpad, dy, p)
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return dx, dw, db


def _windows_at_stride(filtered, p):
    """Keep the filter outputs whose window starts at a multiple of the stride.

    ndimage centres a size-R window on its output pixel: output q covers q - R//2 ... so the
    window that starts at row i*sh is reported at row i*sh + R//2.
    """
    (R, S), (sh, sw) = p.kernel_size, p.stride
    return filtered[
        :, :, R // 2 : R // 2 + sh * (p.out_h - 1) + 1 : sh, S // 2 : S // 2 + sw * (p.out_w - 1) + 1 : sw
    ]


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    xpad = pad(x, p.padding, -np.inf)
    size = (1, 1, *p.kernel_size)
    y = _windows_at_stride(ndimage.maximum_filter(xpad, size=size, mode="nearest"), p).copy()
    # maximum_filter does not propagate NaN; the interface does, so mark those windows again.
    nan_windows = _windows_at_stride(
        ndimage.maximum_filter(np.isnan(xpad), size=size, mode="nearest"), p
    )
    y[nan_windows] = np.nan
    return y, Context(name, "maxpool2d", p, {"xpad": xpad, "y": y})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    xpad, y = ctx.saved["xpad"], ctx.saved["y"]
    # The gradient goes to the first tap in row-major order that holds the window's maximum.
    claimed = np.zeros(p.y_shape, dtype=bool)
    dxpad = np.zeros_like(xpad)
    for (_, _, v), (_, _, gradient) in zip(taps(xpad, p), taps(dxpad, p)):
        hit = ((v == y) | (np.isnan(v) & np.isnan(y))) & ~claimed
        gradient += np.where(hit, dy, 0)
        claimed |= hit
    return crop(dxpad, p)


def _window_sums(a, size: tuple[int, int]):
    """The sum of every R x S window of a (N, C, H, W), reported where ndimage centres it."""
    R, S = size
    rows = ndimage.correlate1d(a, np.ones(R, dtype=a.dtype), axis=2, mode="constant")
    return ndimage.correlate1d(rows, np.ones(S, dtype=a.dtype), axis=3, mode="constant")


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    R, S = p.kernel_size
    sums = _windows_at_stride(_window_sums(pad(x, p.padding), p.kernel_size), p)
    return sums / (R * S), Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    ph, pw = p.padding
    # dx[q] is the stride-spread gradient summed over the R x S positions ending at q, over R*S:
    # spread dy, shift it by (R-1, S-1), and the window starting at q collects it.
    dy_up = _spread(dy, p.stride)
    shifted = np.zeros((p.N, p.C, p.H + 2 * ph + R - 1, p.W + 2 * pw + S - 1), dtype=p.dtype)
    shifted[:, :, R - 1 : R - 1 + dy_up.shape[2], S - 1 : S - 1 + dy_up.shape[3]] = dy_up
    sums = _window_sums(shifted, (R, S))
    starts = sums[:, :, R // 2 :, S // 2 :]  # the window starting at q is reported at q + R//2
    return starts[:, :, ph : ph + p.H, pw : pw + p.W] / (R * S)
