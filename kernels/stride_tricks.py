"""Zero-copy windows from numpy.lib.stride_tricks, contracted by matrix products.

``as_strided`` views the padded input as (N, groups, C/groups, Ho, Wo, R, S) without copying:
the window of output pixel (i, j) is one (R, S) block of that view. The forward pass and ``dw``
are one matrix product each (per group) of the view with the filters or the output gradient;
reshaping the view for it is the one copy numpy makes (``np.einsum`` made two, and copied the
filters too: 10x im2col's memory on ResNet-18's layer4).

``dx`` is the window view's adjoint where that copies fewer values (``_by_windows``: a first
layer, a strided one that widens): each window's gradient, one matrix product per group of the
filters with ``dy``, added tap by tap into a writeable window view of the padded ``dx``.
Elsewhere it is a convolution too: spread ``dy`` out to stride spacing (zeros between) inside a border
of (R-1)*dilation zeros, take the same kind of window view of it, and contract it with the
filters rotated by 180 degrees, a block of rows at a time so that the copy of the view
stays within the size of im2col's column matrix. A strided layer without dilation takes it
phase by phase instead (``_by_phases``): stride_h * stride_w such correlations of ``dy`` itself
with the taps each phase of the input meets, none of them on the spread's zeros. Average pooling's backward pass is that with a kernel of ones.
The spread's zeros are products the definition does not have: exact zeros for finite inputs, but
NaN against an Inf, so a ``w`` or ``dy`` that holds NaN or Inf takes the definition's sums tap by
tap (``kernels._arrays.tap_input_gradient``) instead.
There is no Python loop over output pixels; max pooling's backward loops over the R*S taps only.
"""

from __future__ import annotations

from dataclasses import replace

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
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d, padded_size
from kernels.phases import span
from kernels.traits import Traits

name = "stride_tricks"
description = "as_strided window views contracted by matrix products (the view copied once, a block at a time for dx)"
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


def _filters_outweigh(w, columns: int) -> bool:
    """Whether to write a contraction out as a matrix product rather than leave it to einsum.
    einsum reads the window view in place where it can (3x faster on seed 003's one-channel
    layers, 1.7x on ResNet-18's layer1) but copies the filters as well as the view when it hands
    the product to BLAS, and its peak memory passes twice im2col's once the filters hold more
    than an eighth as many values as the view's ``columns`` (ResNet-18 from layer2 on: 3 to 10x
    in layer3 and layer4); there a matrix product of the view's one copy with the filters as
    they lie costs less."""
    return 8 * w.size > columns


def _columns(view):
    """A window view (N, G, Cg, Ho, Wo, R, S) as G matrices, one row per output pixel (n, i, j)
    and one column per tap (c, r, s): the one copy of the view numpy makes, for the product."""
    N, G, Cg, Ho, Wo, R, S = view.shape
    return view.transpose(1, 0, 3, 4, 2, 5, 6).reshape(G, N * Ho * Wo, Cg * R * S)


def _spread_rows(dy, stride, border: tuple[int, int], rows: tuple[int, int], width: int):
    """Rows ``rows`` = (first, stop) of z, the zeros of width ``width`` that hold dy[..., i, j] at
    [..., border_h + i*sh, border_w + j*sw]: dy spread to stride spacing, behind a border."""
    (sh, sw), (bh, bw), (first, stop) = stride, border, rows
    Ho, Wo = dy.shape[-2:]
    z = np.zeros((*dy.shape[:2], stop - first, width), dtype=dy.dtype)
    lo, hi = max(0, -(-(first - bh) // sh)), min(Ho, -(-(stop - bh) // sh))  # dy rows landing there
    if lo < hi:
        z[:, :, bh + lo * sh - first : bh + (hi - 1) * sh + 1 - first : sh, bw : bw + sw * (Wo - 1) + 1 : sw] = dy[:, :, lo:hi]
    return z


def _input_gradient(dy, kernel, p, dilation, groups):
    """dx (N, C, H, W) of ``kernel`` (groups, K/groups, C/groups, R, S): by phases where the
    layer is strided and not dilated, else one full correlation of the stride-spread dy."""
    if p.stride == (1, 1) or dilation != (1, 1):
        return _full_correlation(dy, kernel, p, dilation, groups)
    return _by_phases(dy, kernel, p, groups)


def _windows_pay(p) -> bool:
    """Whether a layer's dx copies fewer values as the windows' adjoint (C/groups an output
    pixel) than as a correlation of dy (K/groups an input pixel)."""
    return p.C * p.out_h * p.out_w < p.K * p.H * p.W


def _by_windows(dy, kernel, p):
    """dx as the adjoint of the forward's window view: each window's gradient (C/groups * R * S
    values an output pixel, im2col's column matrix) is one matrix product per group of the
    filters with dy, added tap by tap into a writeable window view of the padded dx. It copies
    C/groups values an output pixel where a correlation of dy copies K/groups an input pixel: 21x
    fewer on ResNet's first layer (3 -> 64 channels, 7x7 / 2), whose dx took 81 ms against
    im2col's 7.7. Only the definition's products are made, so NaN and Inf land as it puts them."""
    G, Kg, Cg, R, S = kernel.shape
    N, Ho, Wo = p.N, p.out_h, p.out_w
    rows = dy.reshape(N, G, Kg, Ho * Wo).transpose(1, 2, 0, 3).reshape(G, Kg, N * Ho * Wo)
    with span("product"):
        cols = (kernel.reshape(G, Kg, Cg * R * S).transpose(0, 2, 1) @ rows).reshape(G, Cg, R, S, N, Ho, Wo)
    dxpad = padded_zeros(p)
    with span("scatter"):
        for r, s, view in taps(dxpad, p):
            view += cols[:, :, r, s].transpose(2, 0, 1, 3, 4).reshape(N, p.C, Ho, Wo)
    return crop(dxpad, p)


def _by_phases(dy, kernel, p, groups):
    """dx of a strided layer as one stride-1 full correlation per phase (a, b) of the padded
    input: its pixels (a + sh*m, b + sw*n) meet only the taps (a + sh*t, b + sw*u), so each phase
    is dy's full correlation with that sub-kernel, and the zeros of a spread dy (3 products in 4
    at stride 2) are never multiplied (the phase split of a transposed convolution). Phases that
    no tap reaches (a stride wider than the kernel) stay zero."""
    (sh, sw), (Hp, Wp), (R, S) = p.stride, padded_size(p), kernel.shape[-2:]
    dxpad = np.zeros((p.N, p.C, Hp, Wp), dtype=dy.dtype)
    for a in range(min(sh, R)):
        for b in range(min(sw, S)):
            phase = replace(p, H=-(-(Hp - a) // sh), W=-(-(Wp - b) // sw), padding=(0, 0, 0, 0), stride=(1, 1))
            dxpad[:, :, a::sh, b::sw] = _full_correlation(dy, kernel[..., a::sh, b::sw], phase, (1, 1), groups)
    return crop(dxpad, p)


def _full_correlation(dy, kernel, p, dilation, groups):
    """Full correlation of the stride-spread dy with the 180-degree rotated ``kernel``.

    kernel: (groups, K/groups, C/groups, R, S); returns dx of shape (N, C, H, W).
    dxpad[q] = sum over taps t of kernel[t] * dy_spread[q - t*d]; with a border of (R-1)*d zeros
    in front that is a window of length R starting at q, read against the kernel reversed.

    The product copies the window view: K*R*S values per input pixel (1.2 GB in ResNet-18
    conv1's backward, 5x im2col's column matrix). So dx is made a block of rows at a time, each
    block's spread dy and view built for it, with no more values than im2col's column matrix
    (C*R*S per output pixel); the kernel is rotated and laid out for the product once.
    """
    (R, S), (dh, dw), (ph, _, pw, _) = kernel.shape[-2:], dilation, p.padding
    border = (dh * (R - 1), dw * (S - 1))
    G, Kg, Cg = kernel.shape[:3]
    K, Ho, Wo = dy.shape[1:]
    # rows of dx per block: the block's copy of the view holds at most as many values as im2col's
    # column matrix, or 2**18 (1 MiB of float32: blocks any smaller only add calls)
    budget = max(p.N * p.C * R * S * Ho * Wo, 2**18)
    height = max(1, budget // (p.N * K * R * S * p.W))
    rotated = kernel[..., ::-1, ::-1]
    if _filters_outweigh(kernel, p.N * K * R * S * min(height, p.H) * p.W):  # laid out for the product, once
        rotated = np.ascontiguousarray(rotated.transpose(0, 1, 3, 4, 2)).reshape(G, Kg * R * S, Cg)
    dx = np.empty((p.N, groups, p.C // groups, p.H, p.W), dtype=dy.dtype)
    for top in range(0, p.H, height):
        rows = min(height, p.H - top)
        with span("spread"):  # only the rows and columns of dxpad that are not padding are needed
            z = _spread_rows(dy, p.stride, border, (ph + top, ph + top + rows + border[0]), padded_size(p)[1] + border[1])
        view = windows(z[:, :, :, pw:], groups, (rows, p.W), (R, S), (1, 1), dilation)
        with span("product"):
            if rotated.ndim == 3:
                block = (_columns(view) @ rotated).reshape(G, p.N, rows, p.W, Cg).transpose(1, 0, 4, 2, 3)
            else:
                block = np.einsum("ngkhwrs,gkcrs->ngchw", view, rotated, optimize=True)
            dx[:, :, :, top : top + rows] = block
    return dx.reshape(p.N, p.C, p.H, p.W)


@quiet
def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    G = p.groups
    with span("pad"):
        view = windows(pad(x, p.padding), G, (p.out_h, p.out_w), (p.R, p.S), p.stride, p.dilation)
    w_g = w.reshape(G, p.K // G, p.C // G, p.R, p.S)
    with span("product"):
        if _filters_outweigh(w, view.size):
            y = (w_g.reshape(G, p.K // G, -1) @ _columns(view).transpose(0, 2, 1)).reshape(G, p.K // G, p.N, p.out_h, p.out_w)
            y = y.transpose(2, 0, 1, 3, 4)
        else:
            y = np.einsum("ngchwrs,gkcrs->ngkhw", view, w_g, optimize=True)
    y = np.ascontiguousarray(y).reshape(p.y_shape)
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, {"view": view, "w_g": w_g})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    view, w_g = ctx.saved["view"], ctx.saved["w_g"]
    G = p.groups
    dy_g = dy.reshape(p.N, G, p.K // G, p.out_h, p.out_w)
    # dx first, so that its buffers are gone before dw's
    dx = None
    if need_dx:
        dx = _by_windows(dy, w_g, p) if _windows_pay(p) else _input_gradient(dy, w_g, p, p.dilation, G)
    with span("product"):
        dy_rows = dy_g.transpose(1, 2, 0, 3, 4).reshape(G, p.K // G, -1)
        dw = (dy_rows @ _columns(view)).reshape(p.K, -1, p.R, p.S)
    # dw holds a NaN or Inf wherever dy does: dw and w (two small arrays) tell whether dy's spread
    # and border met one, making NaN where the definition has no product.
    if need_dx and not finite_pair(dw, w_g):
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
