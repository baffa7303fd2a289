"""Direct loops compiled by numba: ``@njit(parallel=True, cache=True)``, in two layouts.

**Tiles** (channels last, for layers with at least ``TILE_CHANNELS // 2`` output channels per
group): the register-blocked direct convolution of oneDNN and of Zhang, Franchetti and Low
(ICML 2018). Each parallel task owns a tile of ``TILE_PIXELS`` output pixels of one row by
``TILE_CHANNELS`` output channels and sums it over C·R·S in a small stack array that LLVM keeps
in vector registers. The input is made channels-last (NHWC) and the weights are blocked as
(group, channel block, R, S, C, TILE_CHANNELS) so each task streams one contiguous block; these
conversions are part of every call and of its timing.

- forward: the tile above, tasks ordered by channel block so a thread keeps its weights in L2;
- ``dx``: the same kernel, run on ``dy`` padded by the kernel's reach, with the weights
  flipped and their two channel axes swapped (a 'full' correlation); a strided layer without
  dilation takes it phase by phase (one such correlation per phase of the input with the taps
  that reach it, so that no zero of a spread ``dy`` is multiplied), others on ``dy`` spread by
  the stride;
- ``dw``: tiles of ``TILE_PIXELS`` input channels by ``TILE_CHANNELS`` output channels, one
  per kernel tap, summed over every output pixel of the batch.

Each row of a tile is summed by one FMA on an LLVM vector of TILE_CHANNELS elements
(``_fma_row``), written in LLVM IR rather than left to a vectoriser: numba keeps LLVM's SLP
vectoriser off (numba#8852), its loop vectoriser does not keep a sum of more than about 80
elements in registers (measured: a 6 x 16 tile ran 60 times slower than a 5 x 16 one), and
LLVM's tuning for Intel's AVX-512 cores prefers 256-bit vectors when it vectorises, which halved
the FMA rate of the earlier, vectorised tiles on Sapphire Rapids (an explicit vector keeps its
width). The tile's size follows the vector unit (``TILE_PIXELS``).

**Rows** (NCHW, for everything else: the seed problems, LeNet-5's first layer, depthwise
layers). Where a layer's columns are one apart (stride 1 along a row), tiles again, of pixels
rather than channels: ``TILE_PIXELS`` output rows by ``TILE_CHANNELS`` columns of one output
channel, each tap one broadcast weight times a vector of an input row (``_pixel_forward``);
``dw`` tiles a kernel row's taps by a vector of ``dy``'s pixels and adds the lanes at the end
(``_pixel_weight_gradient``); ``dx`` of a stride-1 layer is ``_pixel_forward`` run as the 'full'
correlation. Elsewhere, the definition's loops, ordered so the innermost loop runs along an
output row. Each parallel iteration owns the output it writes, so no two threads ever add into
the same element:

- forward: a pixel tile, or one output row (image, output channel, row) per iteration;
- ``dx``: one row of the padded input gradient per iteration, gathering the output rows that
  reach it;
- ``dw``: a pixel tile, or one filter weight per iteration, a long sum over the batch and the
  output pixels that ``fastmath={"reassoc"}`` lets LLVM vectorise.

Output rows and pixel tiles rather than planes keep both cores busy on the seed problems, where
N * K is 1 to 4.

``cache=True`` writes the compiled code next to this module, so a new process loads it instead
of compiling again. Everything is validated (``_checks``) and made contiguous before any
compiled code runs, so no input can read out of bounds.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils, errors
from numba.core.codegen import get_host_cpu_features
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


def _has_avx512():
    """Whether numba compiles for AVX-512 here: its target's features, as its codegen reads them
    (NUMBA_CPU_FEATURES, else the host's). The cache keys compiled code by the same features, so
    a tile size chosen from them always matches the cached kernels."""
    features = numba.config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
    return "+avx512f" in features.split(",")


# A tile's sums must keep both FMA units busy: each unit's FMA has a latency of about 4 cycles,
# so a core needs about 8 independent sums in flight. A row of the tile is TILE_CHANNELS float32,
# one AVX-512 vector or two AVX2 ones: 8 pixels with AVX-512 (8 of its 32 registers), 4 with
# AVX2 (8 of 16; 8 pixels would take all 16 and spill, measured at 2.4x slower).
TILE_CHANNELS = 16  # output channels per tile
TILE_PIXELS = 8 if _has_avx512() else 4  # output pixels of one row per tile (input channels per dw tile)
_TILE = TILE_PIXELS * TILE_CHANNELS

# Which kernels conv2d uses: "auto" (channel tiles or pixel tiles where they pay, see `_layout`
# and `_by_pixels`), or one of VARIANTS for every call (the tests verify each on the whole grid):
# the rows loops, pixel tiles wherever columns are one apart, or channel tiles.
VARIANTS = ("rows", "pixels", "tiles")
VARIANT = "auto"


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


@intrinsic
def _fma_row(typingctx, tile, row, x, x_at, vector, at):
    """tile[row, :] += x * vector[at : at + TILE_CHANNELS], as one FMA on an LLVM vector of
    TILE_CHANNELS elements; x a scalar (broadcast, x_at unused) or an array (its elements from
    ``x_at``).
    Explicit vectors need neither the SLP vectoriser nor an unrolled sum, so a tile of any
    TILE_PIXELS stays in registers. The callers' shapes keep every read in bounds."""
    arrays = (tile, vector) + ((x,) if isinstance(x, types.Array) else ())
    element = x.dtype if isinstance(x, types.Array) else x
    if not all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == element for a in arrays):
        raise errors.TypingError("_fma_row takes C-contiguous arrays of one dtype")

    def codegen(context, builder, signature, args):
        scalar = context.get_value_type(element)
        lanes, align = ir.VectorType(scalar, TILE_CHANNELS), context.get_abi_sizeof(scalar)

        def address(array_type, array, offset):
            data = context.make_array(array_type)(context, builder, array).data
            return builder.bitcast(builder.gep(data, [offset]), lanes.as_pointer())

        here = address(tile, args[0], builder.mul(args[1], ir.Constant(args[1].type, TILE_CHANNELS)))
        w = builder.load(address(vector, args[4], args[5]), align=align)
        if isinstance(x, types.Array):
            xs = builder.load(address(x, args[2], args[3]), align=align)
        else:
            one = builder.insert_element(ir.Constant(lanes, ir.Undefined), args[2], ir.Constant(ir.IntType(32), 0))
            everywhere = ir.Constant(ir.VectorType(ir.IntType(32), TILE_CHANNELS), [0] * TILE_CHANNELS)
            xs = builder.shuffle_vector(one, ir.Constant(lanes, ir.Undefined), everywhere)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lanes, [lanes] * 3),
                                             f"llvm.fma.v{TILE_CHANNELS}{scalar.intrinsic_name}")
        builder.store(builder.call(fma, [xs, w, builder.load(here, align=align)]), here, align=align)
        return context.get_dummy_value()

    return types.none(tile, row, x, x_at, vector, at), codegen


@njit(cache=True, parallel=True)
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
                        _fma_row(acc, jj, xt[n, row, (j0 + jj + left) * sw + s * dw, g, c], 0, wrow, 0)
        for kk in range(min(TILE_CHANNELS, Kg - kb * TILE_CHANNELS)):
            out = y[n, g * Kg + kb * TILE_CHANNELS + kk, i]
            for jj in range(min(TILE_PIXELS, Wo - j0)):
                out[j0 + jj] = acc[jj, kk]


@njit(cache=True, parallel=True)
def _lane_tile_forward(xt, wt, y, top, left, sh, sw, dh, dw):
    """``_tile_forward`` for few output channels per group (dx of a first layer has 3): a tile is
    TILE_PIXELS pixels of one output channel, each summed lane by lane over TILE_CHANNELS input
    channels at a time and its lanes added at the end, so no lane holds a padding channel. wt is
    (G, Kg, R, S, Cp) and xt's channels are padded to Cp, a multiple of TILE_CHANNELS, with zeros."""
    N, K, Ho, Wo = y.shape
    G, Kg, R, S, Cp = wt.shape
    nj = -(-Wo // TILE_PIXELS)
    for t in prange(N * K * Ho * nj):
        n, k, i, j0 = t // (K * Ho * nj), t // (Ho * nj) % K, t // nj % Ho, t % nj * TILE_PIXELS
        g = k // Kg
        acc = _tile(y.dtype)
        for r in range(R):
            row = (i + top) * sh + r * dh
            for s in range(S):
                wv = wt[g, k % Kg, r, s]
                for cb in range(0, Cp, TILE_CHANNELS):
                    for jj in range(TILE_PIXELS):
                        _fma_row(acc, jj, xt[n, row, (j0 + jj + left) * sw + s * dw, g], cb, wv, cb)
        out = y[n, k, i]
        for jj in range(min(TILE_PIXELS, Wo - j0)):
            out[j0 + jj] = acc[jj].sum()


@njit(inline="always")
def _store_weight_tile(acc, dwt_gr, kb, first, step, rows):
    """Row q < rows of a dw tile into dwt_gr[s, c, kb*TC:(kb+1)*TC], (s, c) = first + q*step."""
    for q in range(rows):
        out = dwt_gr[first[0] + q * step[0], first[1] + q * step[1]]
        for kk in range(TILE_CHANNELS):
            out[kb * TILE_CHANNELS + kk] = acc[q, kk]


@njit(cache=True, parallel=True)
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
                        _fma_row(acc, cc, xpix[c0 + cc], 0, dyv, 0)
        _store_weight_tile(acc, dwt[g, r], kb, (s, c0), (0, 1), TILE_PIXELS)


@njit(cache=True, parallel=True)
def _tap_tile_weight_gradient(xt, dyb, dwt, Cg, sh, sw, dh, dw):
    """``_tile_weight_gradient`` with the tile's rows running over TILE_PIXELS taps of a kernel
    row, for one input channel: for layers with few input channels (an RGB image's 3) and wide
    kernels, which a tile of channels would mostly fill with padding. Taps past the kernel's
    last read its last column again and are not written."""
    G, nkb, N, Ho, Wo, _ = dyb.shape
    _, R, S, _, _ = dwt.shape
    nsb = -(-S // TILE_PIXELS)
    for t in prange(G * nkb * R * Cg * nsb):  # the Cg real channels of a group; the others stay unset
        gk, rest = t // (R * Cg * nsb), t % (R * Cg * nsb)
        g, kb = gk // nkb, gk % nkb
        r, c, s0 = rest // (Cg * nsb), rest // nsb % Cg, rest % nsb * TILE_PIXELS
        acc = _tile(dwt.dtype)
        for n in range(N):
            for i in range(Ho):
                xrow = xt[n, i * sh + r * dh]
                dyrow = dyb[g, kb, n, i]
                for j in range(Wo):
                    dyv = dyrow[j]
                    for ss in range(TILE_PIXELS):
                        _fma_row(acc, ss, xrow[j * sw + min(s0 + ss, S - 1) * dw, g, c], 0, dyv, 0)
        _store_weight_tile(acc, dwt[g, r], kb, (s0, c), (1, 0), min(TILE_PIXELS, S - s0))


def _round_up(n, m):
    return -(-n // m) * m


def _channels_last(a, groups, shape, at, step=(1, 1), multiple=TILE_PIXELS):
    """Zeros of ``shape`` (N, rows, columns) with two more axes, groups and their channels padded
    to a multiple of ``multiple``; ``a`` (N, C, H, W) placed from pixel ``at`` with ``step``
    between its pixels. Groups get an axis of their own so that no index in the kernels' inner
    loops is a sum numba must check for a negative value."""
    N, C, H, W = a.shape
    Cp = _round_up(C // groups, multiple)
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
    _tile_forward(xt, _blocked(w, p.groups), y, 0, 0, *p.stride, *p.dilation)
    return y, {"xt": xt, "w": w}


def _flipped_blocks(w, groups):
    """Weights (K, Cg, R, S) flipped in R and S with their channel axes swapped, blocked for the
    tiles: what a 'full' correlation of dy runs against."""
    K, Cg, R, S = w.shape
    Kg = K // groups
    flipped = w[:, :, ::-1, ::-1].reshape(groups, Kg, Cg, R, S).transpose(0, 2, 1, 3, 4).reshape(groups * Cg, Kg, R, S)
    return _blocked(flipped, groups)


def _tiles_input_gradient(dy, w, p):
    """dx as a 'full' correlation of dy with the flipped weights: phase by phase where the layer
    is strided and not dilated (``_by_phases``), else at once on dy spread by the stride."""
    if p.stride != (1, 1) and p.dilation == (1, 1):
        return _by_phases(dy, w, p)
    return _spread_input_gradient(dy, w, p)


def _phases(p):
    """Each phase (a, b) of a strided layer's padded input, pixels (a + sh*m, b + sw*n), that a
    tap reaches and that holds input pixels: its first m and n inside the padding, its size."""
    (sh, sw), (ph, _, pw, _) = p.stride, p.padding
    for a in range(min(sh, p.R)):
        for b in range(min(sw, p.S)):
            m0, n0 = -(-(ph - a) // sh), -(-(pw - b) // sw)
            rows, columns = -(-(ph + p.H - a) // sh) - m0, -(-(pw + p.W - b) // sw) - n0
            if rows > 0 and columns > 0:
                yield (a, b), (m0, n0), (rows, columns)


def _by_phases(dy, w, p):
    """dx phase by phase: the pixels of phase (a, b) meet only the taps (a + sh*t, b + sw*u), so
    they are dy's stride-1 'full' correlation with those taps, and none of the zeros of a spread
    dy is multiplied (3 products in 4 at stride 2). dy is laid out once, placed for phase (0, 0)'s
    taps, the most; a phase with fewer starts that many pixels further in."""
    (sh, sw), (ph, _, pw, _) = p.stride, p.padding
    R0, S0 = -(-p.R // sh), -(-p.S // sw)
    phases = list(_phases(p))
    height = max([p.out_h] + [m0 + rows for _, (m0, _), (rows, _) in phases]) + R0 - 1
    width = max([p.out_w] + [_round_up(cols, TILE_PIXELS) + n0 for _, (_, n0), (_, cols) in phases]) + S0 - 1
    spread = _dy_layout(dy, p, (p.N, height, width), (R0 - 1, S0 - 1))
    dx = np.zeros((p.N, p.C, p.H, p.W), dtype=p.dtype)  # phases no tap reaches stay zero
    for (a, b), (m0, n0), (rows, columns) in phases:
        sub = w[:, :, a::sh, b::sw]
        part = np.empty((p.N, p.C, rows, columns), dtype=p.dtype)
        origin = (m0 + R0 - sub.shape[2], n0 + S0 - sub.shape[3])
        _correlate_dy(spread, sub, p.groups, part, origin, (1, 1))
        dx[:, :, a + sh * m0 - ph :: sh, b + sw * n0 - pw :: sw] = part
    return dx


def _spread_input_gradient(dy, w, p):
    """dx as one 'full' correlation: dy spread by the stride and padded by the kernel's reach,
    against the flipped weights. Only the pixels inside the padding are computed."""
    (ph, _, pw, _), (dh, dw), G = p.padding, p.dilation, p.groups
    reach_h, reach_w = (p.R - 1) * dh, (p.S - 1) * dw
    # rows and columns up to the last of dx plus the top and left padding, and at least every one
    # dy reaches (past dx's, where bottom or right padding reads no input)
    rows = max(p.H + ph, (p.out_h - 1) * p.stride[0] + 1) + reach_h
    columns = max(_round_up(p.W, TILE_PIXELS) + pw, (p.out_w - 1) * p.stride[1] + 1) + reach_w
    spread = _dy_layout(dy, p, (p.N, rows, columns), (reach_h, reach_w), p.stride)
    dx = np.empty((p.N, p.C, p.H, p.W), dtype=p.dtype)
    _correlate_dy(spread, w, G, dx, (ph, pw), p.dilation)
    return dx


def _by_lanes(Cg, Kg):
    """Whether dx of a layer with Cg input and Kg output channels a group is summed lane by lane:
    when Cg would fill less than half of a tile's channels and the Kg of each sum are enough to
    pay for adding a tile's lanes (LeNet-5's conv2, 6 -> 16, took 2x longer by lanes)."""
    return Cg < TILE_CHANNELS // 2 and Kg >= 2 * TILE_CHANNELS


def _dy_layout(dy, p, shape, at, step=(1, 1)):
    """dy channels last, in zeros of ``shape`` from pixel ``at`` with ``step`` between pixels,
    its channels padded for the kernel ``_correlate_dy`` runs."""
    multiple = TILE_CHANNELS if _by_lanes(p.C // p.groups, p.K // p.groups) else TILE_PIXELS
    return _channels_last(dy, p.groups, shape, at, step, multiple)


def _correlate_dy(spread, w, groups, out, origin, dilation):
    """out = the stride-1 'full' correlation, from pixel ``origin``, of dy laid out by
    ``_dy_layout`` with w flipped and its channel axes swapped: by channel tiles, or lane by lane
    where a group has few input channels (they are out's channels)."""
    K, Cg, R, S = w.shape
    if not _by_lanes(Cg, K // groups):
        _tile_forward(spread, _flipped_blocks(w, groups), out, *origin, 1, 1, *dilation)
        return
    wt = np.zeros((groups, Cg, R, S, spread.shape[-1]), dtype=w.dtype)
    wt[..., : K // groups] = w[:, :, ::-1, ::-1].reshape(groups, K // groups, Cg, R, S).transpose(0, 2, 3, 4, 1)
    _lane_tile_forward(spread, wt, out, *origin, 1, 1, *dilation)


def _tiles_weight_gradient(dy, xt, p):
    G, Kg, Cg = p.groups, p.K // p.groups, p.C // p.groups
    Kp = _round_up(Kg, TILE_CHANNELS)
    dyb = np.zeros((p.N, G, Kp, p.out_h, p.out_w), dtype=dy.dtype)
    dyb[:, :, :Kg] = dy.reshape(p.N, G, Kg, p.out_h, p.out_w)
    dyb = np.ascontiguousarray(
        dyb.reshape(p.N, G, Kp // TILE_CHANNELS, TILE_CHANNELS, p.out_h, p.out_w).transpose(1, 2, 0, 4, 5, 3))
    dwt = np.empty((G, p.R, p.S, xt.shape[4], Kp), dtype=dy.dtype)
    # a tile's rows over input channels, or over taps where more of them would be real
    taps = p.S / _round_up(p.S, TILE_PIXELS) > Cg / _round_up(Cg, TILE_PIXELS)
    if taps:
        _tap_tile_weight_gradient(xt, dyb, dwt, Cg, *p.stride, *p.dilation)
    else:
        _tile_weight_gradient(xt, dyb, dwt, *p.stride, *p.dilation)
    dw = dwt[:, :, :, :Cg, :Kg].transpose(0, 4, 3, 1, 2)
    return np.ascontiguousarray(dw.reshape(p.K, Cg, p.R, p.S))


def _layout(p):
    """Tiles when a group has output channels to fill at least half a tile and is not depthwise;
    rows otherwise (a tile of 16 channels would mostly multiply padding)."""
    if VARIANT != "auto":
        return "tiles" if VARIANT == "tiles" else "rows"
    return "tiles" if p.K // p.groups >= TILE_CHANNELS // 2 and p.C // p.groups * p.R * p.S >= 4 else "rows"


@njit(cache=True, parallel=True)
def _pixel_forward(xpad, w, y, sh, dh, dw, groups):
    """y[n, k, i, j] = sum over c, r, s of w[k, c, r, s] * xpad[n, g*Cg + c, i*sh + r*dh, j + s*dw],
    columns one apart: a tile is TILE_PIXELS output rows by TILE_CHANNELS pixels of each (one
    vector) of one output channel, each tap a broadcast weight times a vector of an input row.
    xpad has zeros enough for whole tiles (``_pixel_padded``)."""
    N, K, Ho, Wo = y.shape
    _, Cg, R, S = w.shape
    Kg = K // groups
    ni, nj = -(-Ho // TILE_PIXELS), -(-Wo // TILE_CHANNELS)
    for t in prange(N * K * ni * nj):
        n, k = t // (K * ni * nj), t // (ni * nj) % K
        i0, j0 = t // nj % ni * TILE_PIXELS, t % nj * TILE_CHANNELS
        c0 = k // Kg * Cg
        acc = _tile(y.dtype)
        for c in range(Cg):
            plane = xpad[n, c0 + c]
            for r in range(R):
                for s in range(S):
                    wv = w[k, c, r, s]
                    for ii in range(TILE_PIXELS):
                        _fma_row(acc, ii, wv, 0, plane[(i0 + ii) * sh + r * dh], j0 + s * dw)
        for ii in range(min(TILE_PIXELS, Ho - i0)):
            out = y[n, k, i0 + ii]
            for jj in range(min(TILE_CHANNELS, Wo - j0)):
                out[j0 + jj] = acc[ii, jj]


@njit(cache=True, parallel=True)
def _pixel_weight_gradient(xpad, dyp, dw_out, sh, dh, dw, groups):
    """dw[k, c, r, s] = sum over n, i, j of dyp[n, k, i, j] * xpad[n, g*Cg + c, i*sh + r*dh, j + s*dw],
    columns one apart: a tile is TILE_PIXELS taps of a kernel row by TILE_CHANNELS pixels (one
    vector) of dy's rows, padded with zeros to whole vectors (dyp); its lanes are added at the
    end. Taps past the kernel's last (xpad is wide enough for them) are summed and not written."""
    N, K, Ho, Wv = dyp.shape
    _, Cg, R, S = dw_out.shape
    Kg = K // groups
    nsb = -(-S // TILE_PIXELS)
    for t in prange(K * Cg * R * nsb):
        k, c, r, s0 = t // (Cg * R * nsb), t // (R * nsb) % Cg, t // nsb % R, t % nsb * TILE_PIXELS
        plane = k // Kg * Cg + c
        acc = _tile(dw_out.dtype)
        for n in range(N):
            for i in range(Ho):
                xrow, dyrow = xpad[n, plane, i * sh + r * dh], dyp[n, k, i]
                for j0 in range(0, Wv, TILE_CHANNELS):
                    for ss in range(TILE_PIXELS):
                        _fma_row(acc, ss, xrow, j0 + (s0 + ss) * dw, dyrow, j0)
        for ss in range(min(TILE_PIXELS, S - s0)):
            dw_out[k, c, r, s0 + ss] = acc[ss].sum()


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
    for nci in prange(N * C * Ho):  # one output row each, its taps one after another
        n, c, i = nci // (C * Ho), nci // Ho % C, nci % Ho
        best, best_t = y[n, c, i], argmax[n, c, i]
        first = xpad[n, c, i * sh]
        for j in range(Wo):
            best[j] = first[j * sw]
            best_t[j] = 0
        # Taps in row-major order, each moving a pixel only to a strictly larger value: ties keep
        # the first. A NaN beats any number (as np.argmax has it), so it propagates. The choice
        # is made without a branch (a mask, and max), which random data would mispredict half
        # the time: 2.4x faster on LeNet-5's first pooling.
        for r in range(R):
            xrow = xpad[n, c, i * sh + r]
            for s in range(S):
                t = r * S + s
                for j in range(Wo):
                    v, b = xrow[j * sw + s], best[j]
                    mask = -np.int64((v > b) | ((v != v) & (b == b)))  # all ones where v wins
                    best_t[j] = (t & mask) | (best_t[j] & ~mask)
                    best[j] = max(b, v) if v == v else v


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
        y, saved = _rows_forward(x, w, p)
    if b is not None:
        y += b[None, :, None, None]
    return y, Context(name, "conv2d", p, saved)


# A pixel tile pays where each of its outputs sums at least this many products; below it, the
# tile's set-up and stores outweigh them (see `_by_pixels`). Measured on Sapphire Rapids, one
# thread: 25 products (a 5x5 filter) ran 1.3 to 3.9x faster by pixels, 9 and 18 (3x3 filters
# of the seeds) up to 1.8x slower on one image and within 12 % either way on a batch of 8.
PIXEL_PRODUCTS = 20


def _by_pixels(p, channels):
    """Whether a layer's NCHW sums go by pixel tiles: its columns one apart, and each output a
    sum of ``channels`` * R * S products (C/groups of them forward and for dw, K/groups for dx)."""
    if VARIANT == "rows":
        return False
    return p.stride[1] == 1 and (VARIANT == "pixels" or channels * p.R * p.S >= PIXEL_PRODUCTS)


def _rows_forward(x, w, p):
    """The NCHW layout's forward: by pixel tiles where they pay (`_by_pixels`), else by rows.
    dw takes the same path, on the input padded for it."""
    pixels = _by_pixels(p, p.C // p.groups)
    if pixels:
        xpad = _pixel_padded(x, p)
        y = np.empty(p.y_shape, dtype=p.dtype)
        _pixel_forward(xpad, w, y, p.stride[0], *p.dilation, p.groups)
    else:
        xpad = pad(x, p.padding)
        y = np.zeros(p.y_shape, dtype=p.dtype)
        _conv_forward(xpad, w, y, *p.stride, *p.dilation, p.groups)
    return y, {"xpad": xpad, "w": w, "pixels": pixels}


def _pixel_padded(x, p):
    """x padded as the layer pads it, and with zeros past its bottom and right for whole pixel
    tiles: TILE_PIXELS output rows, TILE_CHANNELS columns, and the taps past a kernel row's last
    that ``_pixel_weight_gradient`` sums."""
    (top, _, left, _), (rows, width) = p.padding, padded_size(p)
    (dh, dw), sh = p.dilation, p.stride[0]
    rows = max(rows, (_round_up(p.out_h, TILE_PIXELS) - 1) * sh + (p.R - 1) * dh + 1)
    width = max(width, _round_up(p.out_w, TILE_CHANNELS) + (_round_up(p.S, TILE_PIXELS) - 1) * dw)
    out = np.zeros((p.N, p.C, rows, width), dtype=p.dtype)
    out[:, :, top : top + p.H, left : left + p.W] = x
    return out


def _rows_weight_gradient(dy, xpad, w, p, pixels):
    """dw in the NCHW layout: by pixel tiles where the forward pass took them (``pixels``), unless
    an input pixel that only a padded dy's zeros meet there is NaN or Inf (0 * Inf would be NaN);
    else by the rows loops."""
    dw = np.zeros_like(w)
    if pixels and math.isfinite(xpad[:, :, :, p.out_w :].sum()):
        dyp = np.zeros((p.N, p.K, p.out_h, _round_up(p.out_w, TILE_CHANNELS)), dtype=dy.dtype)
        dyp[:, :, :, : p.out_w] = dy
        _pixel_weight_gradient(xpad, dyp, dw, p.stride[0], *p.dilation, p.groups)
    else:
        _conv_backward_weight(dy, xpad, dw, *p.stride, *p.dilation, p.groups)
    return dw


def _pixel_input_gradient(dy, w, p):
    """dx of a layer of stride 1 by pixel tiles: the 'full' correlation of dy, padded by the
    kernel's reach, with the weights flipped and their channel axes swapped, over the padded
    input, then cropped."""
    (dh, dw), G, (Hp, Wp) = p.dilation, p.groups, padded_size(p)
    reach_h, reach_w = (p.R - 1) * dh, (p.S - 1) * dw
    dyp = np.zeros((p.N, p.K, _round_up(Hp, TILE_PIXELS) + reach_h, _round_up(Wp, TILE_CHANNELS) + reach_w), dtype=p.dtype)
    dyp[:, :, reach_h : reach_h + p.out_h, reach_w : reach_w + p.out_w] = dy
    Kg, Cg = p.K // G, p.C // G
    flipped = w[:, :, ::-1, ::-1].reshape(G, Kg, Cg, p.R, p.S).transpose(0, 2, 1, 3, 4).reshape(p.C, Kg, p.R, p.S)
    dxpad = np.empty((p.N, p.C, Hp, Wp), dtype=p.dtype)
    _pixel_forward(dyp, np.ascontiguousarray(flipped), dxpad, 1, dh, dw, G)
    return crop(dxpad, p)


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
        dw = _rows_weight_gradient(dy, ctx.saved["xpad"], w, p, ctx.saved["pixels"])
    dx = None
    if need_dx:
        # The tiles' 'full' correlations multiply zeros of their own (the stride's gaps, the border),
        # which a NaN or Inf in w turns into NaN; dw is non-finite exactly when that can happen.
        if not finite_pair(dw, w):
            dx = _rows_input_gradient(dy, w, p)
        elif "xt" in ctx.saved:
            dx = _tiles_input_gradient(dy, w, p)
        else:
            pixels = p.stride == (1, 1) and _by_pixels(p, p.K // p.groups)
            dx = (_pixel_input_gradient if pixels else _rows_input_gradient)(dy, w, p)
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
