"""Zero-copy windows from numpy.lib.stride_tricks, contracted with einsum.

``as_strided`` views the padded input as (N, groups, C/groups, Ho, Wo, R, S) without copying:
the window of output pixel (i, j) is one (R, S) block of that view. The forward pass and ``dw``
are single ``einsum`` contractions of the view with the filters or the output gradient.

``dx`` is a convolution too: spread ``dy`` out to stride spacing (zeros between) inside a border
of (R-1)*dilation zeros, take the same kind of window view of it, and contract it with the
filters rotated by 180 degrees. Average pooling's backward pass is that with a kernel of ones.
The spread's zeros are products the definition does not have: exact zeros for finite inputs, but
NaN against an Inf, so a ``w`` or ``dy`` that holds NaN or Inf takes the definition's sums tap by
tap (``kernels._arrays.tap_input_gradient``) instead.
There is no Python loop over output pixels; max pooling's backward loops over the R*S taps only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels._arrays import (
    crop,
    finite_pair,
    pad,
    padded_zeros,
    quiet,
    tap_input_gradient,
    taps,
)
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d
from kernels.phases import span
from kernels.traits import Traits

name = "stride_tricks"
description = "as_strided window views (no copies) contracted with einsum"
TRAITS = Traits(phases=True)


def windows(a, groups: int, out: tuple[int, int], kernel: tuple[int, int], stride, dilation):
    """Read-only view ``v[n, g, c, i, j, r, s] = a[n, g*Cg + c, i*sh + r*dh, j*sw + s*dw]``."""
    N, C, _, _ = a.shape
    sN, sC, sH, sW = a.strides
    (sh, sw), (dh, dw) = stride, dilation
    return as_strided(
        a,
        shape=(N, groups, C // groups, *out, *kernel),
        strides=(sN, sC * (C // groups), sC, sH * sh, sW * sw, sH * dh, sW * dw),
        writeable=False,
    )


def _spread_with_border(dy, stride, border: tuple[int, int], shape: tuple[int, int]):
    """Zeros of ``shape`` holding dy[..., i, j] at [..., border_h + i*sh, border_w + j*sw]."""
    (sh, sw), (bh, bw) = stride, border
    Ho, Wo = dy.shape[-2:]
    z = np.zeros((*dy.shape[:2], *shape), dtype=dy.dtype)
    z[:, :, bh : bh + sh * (Ho - 1) + 1 : sh, bw : bw + sw * (Wo - 1) + 1 : sw] = dy
    return z


def _input_gradient(dy, kernel, p, dilation, groups):
    """Full correlation of the stride-spread dy with the 180-degree rotated ``kernel``.

    kernel: (groups, K/groups, C/groups, R, S); returns dx of shape (N, C, H, W).
    dxpad[q] = sum over taps t of kernel[t] * dy_spread[q - t*d]; with a border of (R-1)*d zeros
    in front that is a window of length R starting at q, read against the kernel reversed.
    """
    (R, S), (dh, dw), (ph, pw) = kernel.shape[-2:], dilation, p.padding
    border = (dh * (R - 1), dw * (S - 1))
    with span("spread"):
        z = _spread_with_border(
            dy, p.stride, border, (p.H + 2 * ph + border[0], p.W + 2 * pw + border[1])
        )
    # Only the rows and columns of dxpad that are not padding are needed: start the view there.
    view = windows(z[:, :, ph:, pw:], groups, (p.H, p.W), (R, S), (1, 1), dilation)
    with span("einsum"):
        dx = np.einsum("ngkhwrs,gkcrs->ngchw", view, kernel[..., ::-1, ::-1], optimize=True)
    return dx.reshape(p.N, p.C, p.H, p.W)


@quiet
def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    G = p.groups
    with span("pad"):
        view = windows(pad(x, p.padding), G, (p.out_h, p.out_w), (p.R, p.S), p.stride, p.dilation)
    w_g = w.reshape(G, p.K // G, p.C // G, p.R, p.S)
    with span("einsum"):
        y = np.einsum("ngchwrs,gkcrs->ngkhw", view, w_g, optimize=True).reshape(p.y_shape)
    y = np.ascontiguousarray(y)
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, {"view": view, "w_g": w_g})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    view, w_g = ctx.saved["view"], ctx.saved["w_g"]
    G = p.groups
    dy_g = dy.reshape(p.N, G, p.K // G, p.out_h, p.out_w)
    with span("einsum"):
        dw = np.einsum("ngkhw,ngchwrs->gkcrs", dy_g, view, optimize=True).reshape(p.K, -1, p.R, p.S)
    # dw holds a NaN or Inf wherever dy does: dw and w (two small arrays) tell whether dy's spread
    # and border, below, would meet one.
    if not need_dx:
        dx = None
    elif finite_pair(dw, w_g):
        dx = _input_gradient(dy, w_g, p, p.dilation, G)
    else:  # the spread dy's gaps and border would meet the NaN or Inf: the definition's own sums
        dx = tap_input_gradient(dy, w_g, p)
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    return None if dx is None else np.ascontiguousarray(dx), np.ascontiguousarray(dw), db


def _pool_view(x, p, fill: float):
    view = windows(pad(x, p.padding, fill), 1, (p.out_h, p.out_w), p.kernel_size, p.stride, (1, 1))
    return view[:, 0]  # (N, C, Ho, Wo, R, S)


def maxpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    R, S = p.kernel_size
    flat = _pool_view(x, p, -np.inf).reshape(*p.y_shape, R * S)
    argmax = flat.argmax(axis=-1)  # first maximum in row-major order; a NaN counts as the maximum
    y = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return y, Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    argmax = ctx.saved["argmax"]
    S = p.kernel_size[1]
    dxpad = padded_zeros(p)
    for r, s, gradient in taps(dxpad, p):
        gradient += np.where(argmax == r * S + s, dy, 0)
    return crop(dxpad, p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = _pool_view(x, p, 0.0).mean(axis=(-2, -1))
    return y, Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    R, S = p.kernel_size
    ones = np.full((p.C, 1, 1, R, S), 1.0 / (R * S), dtype=p.dtype)  # depthwise: groups = C
    return np.ascontiguousarray(_input_gradient(dy, ones, p, (1, 1), p.C))
