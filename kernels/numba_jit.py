"""Direct loops compiled by numba: ``@njit(parallel=True, cache=True)``, in two layouts.

**Tiles** (channels last, for layers with at least ``TILE_CHANNELS // 2`` output channels per
group): the register-blocked direct convolution of oneDNN and of Zhang, Franchetti and Low
(ICML 2018). Each parallel task owns a tile of ``TILE_PIXELS`` output pixels of one row by
``TILE_CHANNELS`` output channels and sums it over C·R·S in a small stack array that LLVM keeps
in vector registers. The input is made channels-last (NHWC) and the weights are blocked as
(group, channel block, R, S, C, TILE_CHANNELS) so each task streams one contiguous block; these
conversions are part of every call and of its timing.

- forward: the tile above, tasks ordered by channel block so a thread keeps its weights in L2;
- ``dx``: the same kernel, run on ``dy`` spread by the stride and padded, with the weights
  flipped and their two channel axes swapped (a 'full' correlation);
- ``dw``: tiles of ``TILE_PIXELS`` input channels by ``TILE_CHANNELS`` output channels, one
  per kernel tap, summed over every output pixel of the batch.

The tile's sums are unrolled straight-line code that only LLVM's SLP vectoriser turns into
vector FMAs. numba leaves it off by default since numba#8852 (miscompilations reported in
2023), so these kernels, and only these, are compiled with it on (``_slp``); they are verified
on the whole case grid like every kernel.

**Rows** (NCHW, for everything else: the seed problems, LeNet-5's first layer, depthwise
layers): the definition's loops, ordered so the innermost loop runs along an output row; at
stride 1 it reads and writes 1-D row slices, which LLVM vectorises. Each parallel iteration
owns the output it writes, so no two threads ever add into the same element:

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

from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils, errors
from numba.extending import intrinsic

from kernels._arrays import crop, finite_pair, pad, padded_zeros
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d, padded_size
from kernels.traits import Traits

name = "numba"
description = (
    "numba @njit direct loops: register-blocked channels-last tiles where a layer has channels "
    "to fill them, else loops along output rows; parallel, cached compilation"
)

TRAITS = Traits(own_threads=True)

TILE_PIXELS = 4  # output pixels of one row per tile (and input channels per dw tile)
TILE_CHANNELS = 16  # output channels per tile: two AVX2 vectors of float32, one of AVX-512
_TILE = TILE_PIXELS * TILE_CHANNELS

# Which layout conv2d uses: "auto" (tiles where they pay, see `_layout`), or one of VARIANTS
# for every call (the tests verify each on the whole grid).
VARIANTS = ("rows", "tiles")
VARIANT = "auto"


@contextmanager
def _slp():
    """Compile with LLVM's SLP vectoriser on (numba's default is off): it is what turns a tile's
    unrolled sums into vector FMAs. Costs about a microsecond when nothing needs compiling."""
    before = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = before


@intrinsic
def _zeroed(typingctx, dtype):
    """A pointer to ``_TILE`` zeros of ``dtype`` on the task's stack. With the tile's loops
    unrolled, LLVM keeps them in registers (an array from np.zeros, on the heap, it cannot)."""

    def codegen(context, builder, signature, args):
        element = context.get_value_type(dtype.dtype)
        tile = cgutils.alloca_once(builder, element, size=_TILE)  # in the entry block: once a task
        cgutils.memset(builder, tile, context.get_constant(types.intp, _TILE * context.get_abi_sizeof(element)), 0)
        return tile

    if not isinstance(dtype, types.DType):
        raise errors.TypingError("_zeroed takes a dtype")
    return types.CPointer(dtype.dtype)(dtype), codegen


@njit(inline="always")
def _tile(dtype):
    """A TILE_PIXELS x TILE_CHANNELS array of zeros, in registers once compiled."""
    return numba.carray(_zeroed(dtype), (TILE_PIXELS, TILE_CHANNELS))


@njit(cache=True, parallel=True, fastmath={"contract"})
def _tile_forward(xt, wb, y, top, left, sh, sw, dh, dw):
    """y[n, g*Kg + k, i, j] = sum over c, r, s of wb[g, k // TC, r, s, c, k % TC] *
    xt[n, (i + top)*sh + r*dh, (j + left)*sw + s*dw, g, c], for y NCHW and xt channels last,
    wide enough for whole tiles."""
    N, K, Ho, Wo = y.shape
    G, nkb, R, S, Cg, _ = wb.shape
    Kg = K // G
    nj = -(-Wo // TILE_PIXELS)
    for t in prange(G * nkb * N * Ho * nj):  # channel block outermost: a thread keeps its weights
        gk, rest = t // (N * Ho * nj), t % (N * Ho * nj)
        g, kb = gk // nkb, gk % nkb
        n, i, j0 = rest // (Ho * nj), rest // nj % Ho, rest % nj * TILE_PIXELS
        acc = _tile(y.dtype)
        wblock = wb[g, kb]
        for r in range(R):
            row = (i + top) * sh + r * dh
            for s in range(S):
                for c in range(Cg):
                    wrow = wblock[r, s, c]
                    for jj in range(TILE_PIXELS):
                        xv = xt[n, row, (j0 + jj + left) * sw + s * dw, g, c]
                        for kk in range(TILE_CHANNELS):
                            acc[jj, kk] += xv * wrow[kk]
        for kk in range(min(TILE_CHANNELS, Kg - kb * TILE_CHANNELS)):
            out = y[n, g * Kg + kb * TILE_CHANNELS + kk, i]
            for jj in range(min(TILE_PIXELS, Wo - j0)):
                out[j0 + jj] = acc[jj, kk]


@njit(cache=True, parallel=True, fastmath={"contract"})
def _tile_weight_gradient(xt, dyb, dwt, sh, sw, dh, dw):
    """dwt[g, r, s, c, kb*TC + k] = sum over n, i, j of xt[n, i*sh + r*dh, j*sw + s*dw, g, c]
    * dyb[g, kb, n, i, j, k]; a tile is TILE_PIXELS input channels by TILE_CHANNELS."""
    G, nkb, N, Ho, Wo, _ = dyb.shape
    _, R, S, Cp, _ = dwt.shape
    ncb = Cp // TILE_PIXELS
    for t in prange(G * nkb * R * S * ncb):
        gk, rest = t // (R * S * ncb), t % (R * S * ncb)
        g, kb = gk // nkb, gk % nkb
        r, s, c0 = rest // (S * ncb), rest // ncb % S, rest % ncb * TILE_PIXELS
        acc = _tile(dwt.dtype)
        for n in range(N):
            for i in range(Ho):
                xrow = xt[n, i * sh + r * dh]
                dyrow = dyb[g, kb, n, i]
                for j in range(Wo):
                    xpix = xrow[j * sw + s * dw, g]
                    dyv = dyrow[j]
                    for cc in range(TILE_PIXELS):
                        xv = xpix[c0 + cc]
                        for kk in range(TILE_CHANNELS):
                            acc[cc, kk] += xv * dyv[kk]
        for cc in range(TILE_PIXELS):
            out = dwt[g, r, s, c0 + cc]
            for kk in range(TILE_CHANNELS):
                out[kb * TILE_CHANNELS + kk] = acc[cc, kk]


def _round_up(n, m):
    return -(-n // m) * m


def _channels_last(a, groups, shape, at, step=(1, 1)):
    """Zeros of ``shape`` (N, rows, columns) with two more axes, groups and their channels padded
    to a multiple of TILE_PIXELS; ``a`` (N, C, H, W) placed from pixel ``at`` with ``step``
    between its pixels. Groups get an axis of their own so that no index in the kernels' inner
    loops is a sum numba must check for a negative value."""
    N, C, H, W = a.shape
    Cp = _round_up(C // groups, TILE_PIXELS)
    out = np.zeros((*shape, groups, Cp), dtype=a.dtype)
    (top, left), (sh, sw) = at, step
    rows = slice(top, top + (H - 1) * sh + 1, sh)
    cols = slice(left, left + (W - 1) * sw + 1, sw)
    out[:, rows, cols, :, : C // groups] = a.reshape(N, groups, C // groups, H, W).transpose(0, 3, 4, 1, 2)
    return out


def _blocked(w, groups):
    """Weights (K, Cg, R, S) as (G, K-blocks, R, S, Cg, TILE_CHANNELS), zero-padded in K."""
    K, Cg, R, S = w.shape
    Kg = K // groups
    Kp = _round_up(Kg, TILE_CHANNELS)
    out = np.zeros((groups, Kp, Cg, R, S), dtype=w.dtype)
    out[:, :Kg] = w.reshape(groups, Kg, Cg, R, S)
    return np.ascontiguousarray(out.reshape(groups, Kp // TILE_CHANNELS, TILE_CHANNELS, Cg, R, S).transpose(0, 1, 4, 5, 3, 2))


def _tiles_forward(x, w, p):
    (top, _, left, _), (rows, width), sw, dw = p.padding, padded_size(p), p.stride[1], p.dilation[1]
    columns = (_round_up(p.out_w, TILE_PIXELS) - 1) * sw + (p.S - 1) * dw + 1  # every tile in bounds
    xt = _channels_last(x, p.groups, (p.N, rows, max(columns, width)), (top, left))
    y = np.empty(p.y_shape, dtype=p.dtype)
    with _slp():
        _tile_forward(xt, _blocked(w, p.groups), y, 0, 0, *p.stride, *p.dilation)
    return y, {"xt": xt, "w": w}


def _tiles_input_gradient(dy, w, p):
    """dx as a 'full' correlation: dy spread by the stride and padded by the kernel's reach,
    against the weights flipped in R and S with their channel axes swapped. Only the pixels
    inside the padding are computed."""
    (ph, _, pw, _), (dh, dw), G = p.padding, p.dilation, p.groups
    reach_h, reach_w = (p.R - 1) * dh, (p.S - 1) * dw
    # rows and columns up to the last of dx plus the top and left padding, and at least every one
    # dy reaches (past dx's, where bottom or right padding reads no input)
    rows = max(p.H + ph, (p.out_h - 1) * p.stride[0] + 1) + reach_h
    columns = max(_round_up(p.W, TILE_PIXELS) + pw, (p.out_w - 1) * p.stride[1] + 1) + reach_w
    spread = _channels_last(dy, G, (p.N, rows, columns), (reach_h, reach_w), p.stride)
    Kg, Cg = p.K // G, p.C // G
    flipped = w[:, :, ::-1, ::-1].reshape(G, Kg, Cg, p.R, p.S).transpose(0, 2, 1, 3, 4).reshape(p.C, Kg, p.R, p.S)
    dx = np.empty((p.N, p.C, p.H, p.W), dtype=p.dtype)
    with _slp():
        _tile_forward(spread, _blocked(flipped, G), dx, ph, pw, 1, 1, *p.dilation)
    return dx


def _tiles_weight_gradient(dy, xt, p):
    G, Kg, Cg = p.groups, p.K // p.groups, p.C // p.groups
    Kp = _round_up(Kg, TILE_CHANNELS)
    dyb = np.zeros((p.N, G, Kp, p.out_h, p.out_w), dtype=dy.dtype)
    dyb[:, :, :Kg] = dy.reshape(p.N, G, Kg, p.out_h, p.out_w)
    dyb = np.ascontiguousarray(
        dyb.reshape(p.N, G, Kp // TILE_CHANNELS, TILE_CHANNELS, p.out_h, p.out_w).transpose(1, 2, 0, 4, 5, 3))
    dwt = np.empty((G, p.R, p.S, xt.shape[4], Kp), dtype=dy.dtype)
    with _slp():
        _tile_weight_gradient(xt, dyb, dwt, *p.stride, *p.dilation)
    dw = dwt[:, :, :, :Cg, :Kg].transpose(0, 4, 3, 1, 2)
    return np.ascontiguousarray(dw.reshape(p.K, Cg, p.R, p.S))


def _layout(p):
    """Tiles when a group has output channels to fill at least half a tile and is not depthwise;
    rows otherwise (a tile of 16 channels would mostly multiply padding)."""
    if VARIANT != "auto":
        return VARIANT
    return "tiles" if p.K // p.groups >= TILE_CHANNELS // 2 and p.C // p.groups * p.R * p.S >= 4 else "rows"


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


def _loop_input(a):
    """``a`` as the compiled loops take it: C-contiguous and writeable, copied only where it is
    not. numba compiles a read-only array as a signature of its own (about 2 s each: 30 compiled
    signatures instead of 18 where tests pass read-only inputs), and types it in Python on every
    call, several microseconds that a tiny layer's call would show."""
    return a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    p = check_conv2d(x, w, b, stride, padding, dilation, groups)
    w = _loop_input(w)
    if _layout(p) == "tiles":
        y, saved = _tiles_forward(x, w, p)
    else:
        xpad = pad(x, p.padding)
        y = np.zeros(p.y_shape, dtype=p.dtype)
        _conv_forward(xpad, w, y, *p.stride, *p.dilation, p.groups)
        saved = {"xpad": xpad, "w": w}
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, saved)


def _rows_input_gradient(dy, w, p):
    dxpad = padded_zeros(p)
    _conv_backward_data(dy, w, dxpad, *p.stride, *p.dilation, p.groups)
    return crop(dxpad, p)


def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    w = ctx.saved["w"]
    dy = _loop_input(dy)
    if "xt" in ctx.saved:
        dw = _tiles_weight_gradient(dy, ctx.saved["xt"], p)
    else:
        dw = np.zeros_like(w)
        _conv_backward_weight(dy, ctx.saved["xpad"], dw, *p.stride, *p.dilation, p.groups)
    dx = None
    if need_dx:
        # The tiles' 'full' correlation multiplies zeros of its own (the stride's gaps, the border),
        # which a NaN or Inf in w turns into NaN; dw is non-finite exactly when that can happen.
        tiles = "xt" in ctx.saved and finite_pair(dw, w)
        dx = (_tiles_input_gradient if tiles else _rows_input_gradient)(dy, w, p)
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
    _maxpool_backward(_loop_input(dy), ctx.saved["argmax"], dxpad, p.kernel_size[1], *p.stride)
    return crop(dxpad, p)


def avgpool2d_forward(x, kernel_size, *, stride=None, padding=0):
    p = check_pool2d(x, kernel_size, stride, padding)
    y = np.zeros(p.y_shape, dtype=p.dtype)
    _avgpool_forward(pad(x, p.padding), y, *p.kernel_size, *p.stride)
    return y, Context(name, "avgpool2d", p, {})


def avgpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "avgpool2d")
    dxpad = padded_zeros(p)
    _avgpool_backward(_loop_input(dy), dxpad, *p.kernel_size, *p.stride)
    return crop(dxpad, p)
