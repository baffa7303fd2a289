"""Direct loops compiled by numba: ``@njit(parallel=True, cache=True)``, in two layouts.

**Tiles** (for layers with at least ``TILE_CHANNELS // 2`` output channels per group): the
register-blocked direct convolution of oneDNN and of Zhang, Franchetti and Low (ICML 2018). Each
parallel task sums tiles of ``TILE_PIXELS`` output pixels of one row by ``TILE_CHANNELS`` output
channels over C·R·S in a small stack array that LLVM keeps in vector registers. Activations are
packed by numba kernels (``_pack``) in oneDNN's blocked manner, (N, groups, rows, channel blocks,
columns, block): a pixel's channels of a block are contiguous, a tile's pixels side by side, and
a row keeps its blocks together; at stride 2 a row's columns go in two phases, so that a tile's
pixels are side by side there too. Weights are packed (``_pack_weights``) as (group, output
block, R, S, inputs, TILE_CHANNELS), in the order a tile reads them. The packing is part of every
call and of its timing.

- forward: the tile above, tasks ordered by output block so a thread keeps its weights in L2;
  a row's last pixels by half a tile where they fill no more (LeNet-5's rows of 10: 4 + 4 + 2);
- ``dx``: the same kernel, run on ``dy`` padded by the kernel's reach, with the weights
  flipped and their two channel axes swapped (a 'full' correlation); a strided layer without
  dilation takes it phase by phase (one such correlation per phase of the input with the taps
  that reach it, so that no zero of a spread ``dy`` is multiplied, each phase stored in place
  by the threads that compute it), others on ``dy`` spread by the stride; a first layer's few
  input channels lane by lane (``_lane_tile_forward``); either way only the taps that reach
  ``dy``'s pixels, not its padding, are summed;
- ``dw``: a matrix product per tap, summed over the output pixels of a chunk of images at a time
  (``DW_CHUNK_BYTES``: their x and dy stay in L2 while the chunk's tiles run) and the chunks added, by tiles
  whose vectors run along a block of input channels (or of output channels, where x's blocks
  are narrower than a vector) and whose rows run along the other channels, or along a kernel
  row's taps for a first layer (``_tile_weight_gradient``); a tile with half its rows real or
  fewer sums half a tile (LeNet-5's conv2: input channels 4 and 5 of a block of 8). The dw of
  ResNet-18's layer1 at batch 8 took 2.5x longer on channels-last x, whose pixels lie a whole
  channel row apart.

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

Where direct loops stay behind a matrix product by their nature: 1x1 layers at batch 1 (in
oneDNN's ResNet-50 and MobileNet shapes, 2.5x to 4.6x im2col's time fwd+bwd on a first-generation
EPYC, the most on 14x14 and 7x7 planes, strided or not, and on MobileNet's 1x1 plane, a dense
layer). A 1x1 layer is a matrix product: im2col's is one SGEMM on x as it lies, which OpenBLAS
blocks for its caches across the whole product, where a tile re-reads its inputs for every block
of 16 output channels; on small planes a row of 7 pixels makes two tiles, one of them part empty,
and the packing and each task's set-up weigh on a few microseconds of work.

``cache=True`` writes the compiled code next to this module, so a new process loads it instead
of compiling again; processes started together compile one at a time (``kernels.numba_cache``),
so that each signature is compiled once. Everything is validated (``_checks``) and made contiguous before any
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
from kernels.numba_cache import lock_compiles
from kernels.traits import Traits

lock_compiles(__name__, __file__)  # one process at a time compiles a signature; the others load it

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
_TCU = np.uint64(TILE_CHANNELS)
# half a tile's pixels: those of a tile of two output channels (``_lane_tile_forward``), and a
# row's last ones where they fill half a tile at most (``_tile_forward``)
_HALF_TILE = TILE_PIXELS // 2

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


@intrinsic
def _lane_sum(typingctx, tile, row):
    """The sum of tile[row, :]'s TILE_CHANNELS lanes, halves added as vectors (16 -> 8 -> 4 -> 2
    -> 1): 4 vector adds where a scalar loop made 15 dependent ones (as long as a small tile's
    FMAs, in LeNet-5's conv2 dx)."""
    if not (isinstance(tile, types.Array) and tile.layout == "C"):
        raise errors.TypingError("_lane_sum takes a C-contiguous tile")

    def codegen(context, builder, signature, args):
        scalar = context.get_value_type(tile.dtype)
        lanes = ir.VectorType(scalar, TILE_CHANNELS)
        data = context.make_array(tile)(context, builder, args[0]).data
        at = builder.gep(data, [builder.mul(args[1], ir.Constant(args[1].type, TILE_CHANNELS))])
        v, n = builder.load(builder.bitcast(at, lanes.as_pointer()), align=context.get_abi_sizeof(scalar)), TILE_CHANNELS
        while n > 1:
            n //= 2
            undefined, picks = ir.Constant(v.type, ir.Undefined), ir.VectorType(ir.IntType(32), n)
            v = builder.fadd(*(builder.shuffle_vector(v, undefined, ir.Constant(picks, list(range(k, k + n)))) for k in (0, n)))
        return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))

    return tile.dtype(tile, row), codegen


@njit(inline="always")
def _reaching(lo, hi, base, step, span, taps):
    """The taps t in range(first, last) of ``taps`` whose reads, base + t*step to base + t*step +
    span, meet the data between lo and hi (the others read only zeros of the padding)."""
    return max(0, -((base + span - lo) // step)), min(taps, -((base - hi) // step))


ANYWHERE = (-(1 << 40), 1 << 40, -(1 << 40), 1 << 40)  # ``data`` of an input whose every pixel counts


@njit(cache=True, parallel=True)
def _tile_forward(xb, wb, y, top, left, sh, sw, dh, dw, split, inputs, place, data):
    """y[n, g*Kg + k, i0 + di*i, j0 + dj*j] = sum over c < inputs, r, s of wb[g, k // TC, r, s, c,
    k % TC] * x[n, g, (i + top)*sh + r*dh, c // B, (j + left)*sw + s*dw, c % B] for i < Ho, j < Wo
    (``place`` = (i0, j0, di, dj, Ho, Wo), ``_everywhere(y)`` or a phase of dx), for y NCHW and
    xb that x ``_pack``ed in blocks of B channels (``_block``), its columns in ``split`` phases
    (the stride, or 1), wide enough for whole tiles. Only the taps that reach ``data`` (first row,
    end row, first column, end column of x's pixels; ``ANYWHERE``) are summed: a 'full'
    correlation's padding (a quarter or more of dx's taps on small planes) is skipped, where a
    zero times a finite weight adds nothing (the forward keeps every tap, so that an Inf weight
    times the padding's zeros gives NaN as the definition's sum does).

    A task is one output row of one block of output channels, its tiles side by side along the
    row (the divisions that find the task are done once a row, not once a tile). The innermost
    loop runs over a block's channels, the next over the blocks: a pixel's channels of a block
    are contiguous, the tile's pixels side by side, and the weights stream in loop order. The
    innermost bound is a value LLVM cannot unroll by: unrolled, it hoisted every channel's loads
    ahead of the FMAs and ran out of registers."""
    N, K = y.shape[:2]
    i0, j0, di, dj, Ho, Wo = place
    G, nkb, R, S, Cp, _ = wb.shape
    _, _, Hp, ncb, Wp, B = xb.shape
    Kg = K // G
    xf, wf = xb.ravel(), wb.ravel()
    block, line, kernel = Wp * B, ncb * Wp * B, R * S * Cp * TILE_CHANNELS
    pixel = sw // split  # a pixel's step in its phase's columns
    columns = np.empty(S, dtype=np.int64)  # where tap s's phase starts: no division in the loops
    for s in range(S):
        columns[s] = s * dw % split * (Wp // split) + s * dw // split
    for t in prange(G * nkb * N * Ho):  # channel block outermost: a thread keeps its weights
        gk, n, i = t // (N * Ho), t // Ho % N, t % Ho
        g, kb = gk // nkb, gk % nkb
        channels = min(TILE_CHANNELS, Kg - kb * TILE_CHANNELS)
        r0, r1 = _reaching(data[0], data[1], (i + top) * sh, dh, 0, R)
        for jt in range(0, Wo, TILE_PIXELS):
            acc = _tile(y.dtype)
            s0, s1 = _reaching(data[2], data[3], (jt + left) * sw, dw, (TILE_PIXELS - 1) * sw, S)
            whole = Wo - jt > _HALF_TILE
            for r in range(r0, r1):
                x0 = ((n * G + g) * Hp + (i + top) * sh + r * dh) * line
                for s in range(s0, s1):
                    xs = x0 + (columns[s] + (jt + left) * pixel) * B
                    ws = gk * kernel + (r * S + s) * Cp * TILE_CHANNELS
                    for cb in range(ncb):
                        xc = np.uint64(xs + cb * block)  # unsigned: no check for a negative index
                        wc = ws + cb * B * TILE_CHANNELS
                        if whole:
                            for cc in range(np.uint64(min(B, inputs - cb * B))):
                                for jj in range(TILE_PIXELS):
                                    _fma_row(acc, jj, xf[xc + cc + np.uint64(jj * pixel * B)], 0, wf, wc + cc * _TCU)
                        else:  # a row's last pixels fill half a tile at most (LeNet-5's rows of 10: 4 + 4 + 2)
                            for cc in range(np.uint64(min(B, inputs - cb * B))):
                                for jj in range(_HALF_TILE):
                                    _fma_row(acc, jj, xf[xc + cc + np.uint64(jj * pixel * B)], 0, wf, wc + cc * _TCU)
            for kk in range(channels):
                out = y[n, g * Kg + kb * TILE_CHANNELS + kk, i0 + di * i]
                for jj in range(min(TILE_PIXELS, Wo - jt)):
                    out[j0 + dj * (jt + jj)] = acc[jj, kk]


@njit(cache=True, parallel=True)
def _lane_tile_forward(xt, wt, y, top, left, sh, sw, dh, dw, place, data):
    """``_tile_forward`` for few output channels per group (dx of a first layer has 3, of
    LeNet-5's conv2 6): a tile is two output channels by TILE_PIXELS // 2 pixels, each pixel's
    sum lane by lane over TILE_CHANNELS input channels at a time and its lanes added at the end,
    so no lane holds a padding channel. A pixel's vector of inputs, loaded once, serves both
    channels: one load an FMA where one channel a tile took 5 loads to 4 FMAs (Zen 1 loads one
    256-bit vector a cycle). wt is (G, Kp, R, S, Cp), Kp the group's output channels rounded up to
    pairs (the odd one's partner zeros), and xt is (N, G, rows, 1, columns, Cp), ``_pack``ed in
    one block of Cp channels (a multiple of TILE_CHANNELS), the padding zeros. A task is one
    output row of a group, every output channel of it: the divisions that find a task are done
    once for all its tiles, whose sums are short (R*S*Cp/16 FMAs a pixel). ``place`` and
    ``data`` as ``_tile_forward``'s."""
    N, K = y.shape[:2]
    i0, j0, di, dj, Ho, Wo = place
    G, Kp, R, S, Cp = wt.shape
    Kg, Hp, Wp = K // G, xt.shape[2], xt.shape[4]
    pair = R * S * Cp  # the step from one channel's weights to the next's
    xf, wf = xt.ravel(), wt.ravel()
    for t in prange(N * G * Ho):
        n, g, i = t // (G * Ho), t // Ho % G, t % Ho
        r0, r1 = _reaching(data[0], data[1], (i + top) * sh, dh, 0, R)
        for jt in range(0, Wo, _HALF_TILE):
            s0, s1 = _reaching(data[2], data[3], (jt + left) * sw, dw, (_HALF_TILE - 1) * sw, S)
            for k in range(0, Kg, 2):  # the tile's columns of taps once for all its output channels
                acc = _tile(y.dtype)
                for r in range(r0, r1):
                    x0 = (((n * G + g) * Hp + (i + top) * sh + r * dh) * Wp + (jt + left) * sw) * Cp
                    w0 = (((g * Kp + k) * R + r) * S) * Cp
                    for s in range(s0, s1):
                        xs, ws = np.uint64(x0 + s * dw * Cp), np.uint64(w0 + s * Cp)  # unsigned: no negative-index check
                        for cb in range(np.uint64(0), np.uint64(Cp), _TCU):
                            for jj in range(_HALF_TILE):  # a constant here (the tile in registers), not a
                                # local of the function, which reaches the parallel loop's body as an argument
                                xj = xs + np.uint64(jj * sw * Cp) + cb
                                _fma_row(acc, jj, xf, xj, wf, ws + cb)
                                _fma_row(acc, _HALF_TILE + jj, xf, xj, wf, ws + np.uint64(pair) + cb)
                for kk in range(min(2, Kg - k)):
                    out = y[n, g * Kg + k + kk, i0 + di * i]
                    for jj in range(min(_HALF_TILE, Wo - jt)):
                        out[j0 + dj * (jt + jj)] = _lane_sum(acc, kk * _HALF_TILE + jj)


# What dw's tiles run along (``_tile_weight_gradient``): their vectors over output channels and
# their rows over input channels or over a kernel row's taps, or their vectors over input channels
# (x's blocks of TILE_CHANNELS, each pixel's a whole vector) and their rows over output channels.
DW_CHANNELS, DW_TAPS, DW_INPUTS = 0, 1, 2
# The images of a chunk of dw's tiles (summed apart, then added): as many as keep a block of their
# x and dy within this, half of a core's L2 cache on Zen 1 (512 KiB; 2 MiB on Sapphire Rapids).
# A whole batch's blocks went to memory and back for every tile: ResNet-18's dw took 1.23-1.34x
# as long per image at batch 8 as at batch 1 (AMD EPYC, 1 and 2 threads).
DW_CHUNK_BYTES = 256 * 1024


@njit(cache=True, parallel=True)
def _tile_weight_gradient(xb, dyb, dw_out, sh, sw, dh, dw, split, mode, images):
    """dw_out (chunks, K, Cg, R, S) by tiles of TP = TILE_PIXELS rows by TILE_CHANNELS lanes, chunk
    m's summed over every output pixel of images m*``images`` to (m + 1)*``images`` (dw is the sum
    of the chunks: a chunk's x and dy stay in cache while its tiles are done, where a whole batch's
    went from the caches to memory for every tile), from x and dy ``_pack``ed in blocks (xb as
    ``_tile_forward`` reads it, its columns in ``split`` phases): dw[k, c, r, s] = sum over
    n, i, j of dy[n, k, i, j] * x[n, c, i*sh + r*dh, j*sw + s*dw] (each in its group). Each FMA
    is a scalar of one operand, broadcast, times a vector of the other, as ``mode`` has it:

    - DW_INPUTS: lanes over a block of TILE_CHANNELS input channels (one x vector a pixel, the
      whole of its cache line), rows over TP output channels (dy in blocks of TP); tiles numbered
      (g, dy block, x block, r, s);
    - DW_CHANNELS: lanes over TILE_CHANNELS output channels (dy in blocks of them), rows over TP
      input channels of a block of x (for blocks narrower than a vector); tiles numbered
      (g, dy block, x block, r, s, TP channels of the block);
    - DW_TAPS: lanes over output channels as above, rows over TP taps of a kernel row of one input
      channel, those of one column phase (s = ph + split*(m*TP + q)), tiles numbered
      (g, dy block, r, c, (ph, m)): for layers with few input channels (an RGB image's 3) and
      wide kernels, which a tile of channels would mostly fill with padding (xb is wide enough
      for taps past the kernel's last; their rows are not stored).

    Either way a row's scalar lies a fixed step after the row before, so one loop serves all. The
    taps are numbered innermost, so a thread's next tile reads the x and dy it has just read, from
    cache (channels-last x, pixels a whole channel row apart, kept missing it); rows are walked
    without a division each (about 40 cycles, as long as a 7-pixel row's FMAs)."""
    N, G, Ho, nkb, Wo, KB = dyb.shape
    _, _, Hp, ncb, Wp, B = xb.shape
    chunks, K, Cg, R, S = dw_out.shape
    Kg, TP = K // G, TILE_PIXELS
    phase, pixel = Wp // split, sw // split  # a phase's columns; a pixel's step among them
    per_phase = -(-(-(-S // split)) // TP)  # tap tiles of a phase
    per_block = 1 if mode == DW_INPUTS else B // TP  # tiles of a block of x at a tap
    A, D0, D1 = (R, Cg, split * per_phase) if mode == DW_TAPS else (ncb, R, S * per_block)
    xf, dyf = xb.ravel(), dyb.ravel()
    tiles = G * nkb * A * D0 * D1
    for task in prange(chunks * tiles):  # chunk outermost: the threads share its x and dy
        m, t = task // tiles, task % tiles
        g, kb, a, b, d = t // (nkb * A * D0 * D1), t // (A * D0 * D1) % nkb, t // (D0 * D1) % A, t // D1 % D0, t % D1
        if mode == DW_TAPS:  # d: phase d // per_phase, its taps from (d % per_phase) * TP
            first = d // per_phase + split * (d % per_phase * TP)
            r, cb, step = a, b // B, dw * B
            offset = (d // per_phase * phase + first * dw // split) * B + b % B
        else:  # d: tap d // per_block, channels from (d % per_block) * TP in block a
            first, s = a * B + d % per_block * TP, d // per_block
            r, cb, step = b, a, 1
            offset = (s * dw % split * phase + s * dw // split) * B + d % per_block * TP
        # the tile's real rows (output channels, input channels or taps): at most half of them
        # (LeNet-5's conv2, input channels 4 and 5 of a block of 8), half a tile's FMAs
        real = Kg - kb * TP if mode == DW_INPUTS else -(-(S - first) // split) if mode == DW_TAPS else Cg - first
        whole = real > _HALF_TILE
        acc = _tile(dw_out.dtype)
        n, i = m * images, 0
        for _ in range((min(N, n + images) - n) * Ho):
            xo = ((((n * G + g) * Hp + i * sh + r * dh) * ncb + cb) * Wp) * B + offset
            do = (((n * G + g) * Ho + i) * nkb + kb) * Wo * KB
            i += 1
            if i == Ho:
                n, i = n + 1, 0
            if mode == DW_INPUTS and whole:
                for j in range(Wo):
                    dj = np.uint64(do + j * KB)  # unsigned: no check for a negative index
                    for q in range(TILE_PIXELS):
                        _fma_row(acc, q, dyf[dj + np.uint64(q)], 0, xf, xo + j * pixel * B)
            elif mode == DW_INPUTS:
                for j in range(Wo):
                    dj = np.uint64(do + j * KB)
                    for q in range(_HALF_TILE):
                        _fma_row(acc, q, dyf[dj + np.uint64(q)], 0, xf, xo + j * pixel * B)
            elif whole:
                for j in range(Wo):
                    xj = np.uint64(xo + j * pixel * B)
                    for q in range(TILE_PIXELS):
                        _fma_row(acc, q, xf[xj + np.uint64(q * step)], 0, dyf, do + j * KB)
            else:
                for j in range(Wo):
                    xj = np.uint64(xo + j * pixel * B)
                    for q in range(_HALF_TILE):
                        _fma_row(acc, q, xf[xj + np.uint64(q * step)], 0, dyf, do + j * KB)
        for q in range(TILE_PIXELS):
            if mode == DW_INPUTS:
                k = kb * TP + q
                if k < Kg:
                    for lane in range(min(TILE_CHANNELS, Cg - cb * B)):
                        dw_out[m, g * Kg + k, cb * B + lane, r, s] = acc[q, lane]
                continue
            c, s = (b, first + split * q) if mode == DW_TAPS else (first + q, d // per_block)
            if c < Cg and s < S:
                for k in range(min(TILE_CHANNELS, Kg - kb * TILE_CHANNELS)):
                    dw_out[m, g * Kg + kb * TILE_CHANNELS + k, c, r, s] = acc[q, k]


@njit(cache=True, parallel=True)
def _pack(a, out, top, left, sh, sw, split):
    """out[n, g, top + h*sh, c // B, column, c % B] = a[n, g*Cg + c, h, w]: activations
    (N, C, H, W) blocked by B = out.shape[-1] channels of each of out.shape[1] groups, placed
    from pixel (top, left) with (sh, sw) between pixels, each row's columns in ``split`` phases
    (column u at (u % split) * columns/split + u // split: at stride 2, a tile's pixels lie side
    by side in one phase); out's other elements are left as they are (zeros). A row keeps its blocks together, so that a tile reads from as many places as the
    kernel has rows (a plane per block would be one place per block and row: too many streams for
    the prefetcher at stride 2). numpy's transposing copy took 2 to 4 times longer."""
    N, C, H, W = a.shape
    G, B = out.shape[1], out.shape[5]
    Cg, phase = C // G, out.shape[4] // split
    for t in prange(N * G * H):
        n, g, h = t // (G * H), t // H % G, t % H
        row = out[n, g, top + h * sh]
        for cb in range(-(-Cg // B)):
            count = min(B, Cg - cb * B)
            src, dst = a[n, g * Cg + cb * B : g * Cg + cb * B + count, h], row[cb]
            for ph in range(split):  # pixels j, j + split, ... of a phase: sw apart (sw is 1 where split is not)
                j = (ph - left) % split
                first = ph * phase + (left + j * sw) // split
                for m in range(len(range(j, W, split))):
                    pixel = dst[first + m * sw]
                    for cc in range(count):  # a pixel's block written at once: 2x faster for blocks of 16
                        pixel[cc] = src[cc, j + m * split]


@njit(cache=True, parallel=True)
def _pack_weights(w, out, swap, r0, s0, dr, ds):
    """out[g, o // TC, r, s, i, o % TC] = w[g*O + o, i, r0 + r*dr, s0 + s*ds] for the tiles'
    weights (O, I = K/G, C/G); or, ``swap``, w[g*I + i, o, ...] with the channel axes swapped
    (O, I = C/G, K/G), as dx's 'full' correlation takes them (flipped: r0, s0 the last taps and
    dr, ds negative). out's padding is left as it is (zeros)."""
    G, nob, R, S, _, TC = out.shape
    K, Cg = w.shape[0], w.shape[1]
    O, I = (Cg, K // G) if swap else (K // G, Cg)
    for t in prange(G * nob):  # a block of TC outputs each: no two threads write one cache line
        g, ob = t // nob, t % nob
        outputs = min(TC, O - ob * TC)
        for r in range(R):
            for s in range(S):
                u, v = r0 + r * dr, s0 + s * ds
                for i in range(I):
                    row = out[g, ob, r, s, i]  # written in order: its TC outputs side by side
                    for oo in range(outputs):
                        row[oo] = w[g * I + i, ob * TC + oo, u, v] if swap else w[g * O + ob * TC + oo, i, u, v]


def _everywhere(y):
    """``place`` (``_tile_forward``) for every pixel of y."""
    return (0, 0, 1, 1, *y.shape[2:])


def _round_up(n, m):
    return -(-n // m) * m


def _block(channels):
    """How many channels a block of ``_pack`` holds: whole tile rows (TILE_PIXELS), up to a
    vector's TILE_CHANNELS (the forward's innermost loop runs over a block, so a long one pays),
    and no more than ``channels`` need (an RGB image's 3 fill one tile row)."""
    return min(TILE_CHANNELS, _round_up(channels, TILE_PIXELS))


def _packed(a, groups, shape, at=(0, 0), step=(1, 1), block=TILE_PIXELS, split=1):
    """Zeros (N, G, rows, blocks, columns, ``block``), ``shape`` being (N, rows, columns of a
    phase), with ``a`` (N, C, H, W) ``_pack``ed into them in ``split`` phases; each group's
    channels padded to whole blocks."""
    blocks = -(-a.shape[1] // groups // block)
    out = np.zeros((shape[0], groups, shape[1], blocks, split * shape[2], block), dtype=a.dtype)
    _pack(_loop_input(a), out, *at, *step, split)
    return out


def _packed_weights(w, groups, swap=False, taps=(0, 0, 1, 1), inputs=TILE_PIXELS):
    """Weights (K, Cg, R, S) as (G, output blocks, R, S, Ip, TILE_CHANNELS), zero-padded to whole
    blocks of TILE_CHANNELS outputs and to Ip, a multiple of ``inputs``, inputs: ``_pack_weights``
    (``taps``: its r0, s0, dr, ds; R and S as many taps as they reach)."""
    K, Cg, R, S = w.shape
    O, I = (Cg, K // groups) if swap else (K // groups, Cg)
    r0, s0, dr, ds = taps
    rows, columns = len(range(r0, -1 if dr < 0 else R, dr)), len(range(s0, -1 if ds < 0 else S, ds))
    out = np.zeros((groups, -(-O // TILE_CHANNELS), rows, columns, _round_up(I, inputs), TILE_CHANNELS), dtype=w.dtype)
    _pack_weights(w, out, swap, *taps)
    return out


def _tiles_forward(x, w, p):
    """The forward tiles, on x packed in column phases where the layer is strided and not dilated:
    a tile's pixels then lie side by side, as at stride 1 (read every other one, the tiles ran
    1.3x longer). A strided 1x1 layer without padding reads only the pixels its stride meets, so
    those alone are packed and read at stride 1. dw reads the same x, at the same stride."""
    (top, _, left, _), (rows, width), (dh, dw) = p.padding, padded_size(p), p.dilation
    stride = p.stride
    if p.R == p.S == 1 and p.padding == (0, 0, 0, 0) and stride != (1, 1):
        x, stride = np.ascontiguousarray(x[:, :, :: stride[0], :: stride[1]]), (1, 1)
        rows, width = p.out_h, p.out_w
    split = stride[1] if dw == 1 else 1
    pixel, TP = stride[1] // split, TILE_PIXELS
    # a phase's columns: x's, every forward tile's, and those of dw's tiles of taps (whole tiles of
    # a phase's taps, past the kernel's last)
    taps = _round_up(-(-p.S // split), TP)
    columns = max(-(-width // split), (_round_up(p.out_w, TP) - 1) * pixel + (p.S - 1) * dw // split + 1,
                  (p.out_w - 1) * pixel + (taps - 1) * dw + 1)
    Cg = p.C // p.groups
    xb = _packed(x, p.groups, (p.N, rows, columns), (top, left), block=_block(Cg), split=split)
    y = np.empty(p.y_shape, dtype=p.dtype)
    _tile_forward(xb, _packed_weights(w, p.groups, inputs=_block(Cg)), y, 0, 0, *stride, dh, dw, split, Cg, _everywhere(y), ANYWHERE)
    return y, {"xb": xb, "stride": stride, "split": split, "w": w}


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
    spread, data = _dy_layout(dy, p, (p.N, height, width), (R0 - 1, S0 - 1))
    # each phase written in place by the kernel; phases no tap reaches (stride over kernel) stay zero
    dx = (np.empty if sh <= p.R and sw <= p.S else np.zeros)((p.N, p.C, p.H, p.W), dtype=p.dtype)
    for (a, b), (m0, n0), (rows, columns) in phases:
        taps_h, taps_w = len(range(a, p.R, sh)), len(range(b, p.S, sw))  # the phase's taps, flipped:
        taps = (a + (taps_h - 1) * sh, b + (taps_w - 1) * sw, -sh, -sw)
        origin = (m0 + R0 - taps_h, n0 + S0 - taps_w)
        place = (a + sh * m0 - ph, b + sw * n0 - pw, sh, sw, rows, columns)
        _correlate_dy(spread, w, p.groups, dx, origin, (1, 1), taps, place, data)
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
    spread, data = _dy_layout(dy, p, (p.N, rows, columns), (reach_h, reach_w), p.stride)
    dx = np.empty((p.N, p.C, p.H, p.W), dtype=p.dtype)
    _correlate_dy(spread, w, G, dx, (ph, pw), p.dilation, (p.R - 1, p.S - 1, -1, -1), _everywhere(dx), data)
    return dx


def _by_lanes(Cg, Kg):
    """Whether dx of a layer with Cg input and Kg output channels a group is summed lane by lane:
    when Cg would fill less than half of a tile's channels and the Kg of each sum fill a vector
    (LeNet-5's conv2, 6 -> 16: 2.9 ms by lanes, 4.8 ms by tiles with 6 of 16 channels real, AMD
    EPYC, one thread)."""
    return Cg < TILE_CHANNELS // 2 and Kg >= TILE_CHANNELS


def _dy_layout(dy, p, shape, at, step=(1, 1)):
    """dy in zeros of ``shape`` (N, rows, columns) from pixel ``at`` with ``step`` between pixels,
    packed for the kernel ``_correlate_dy`` runs: in blocks of TILE_PIXELS channels for the tiles,
    in one of them all (padded to whole vectors) for the lanes; and where its pixels lie (first
    row, end row, first column, end column: ``_tile_forward``'s ``data``)."""
    Cg, Kg = p.C // p.groups, p.K // p.groups
    block = _round_up(Kg, TILE_CHANNELS) if _by_lanes(Cg, Kg) else _block(Kg)
    ends = [a + (n - 1) * s + 1 for a, n, s in zip(at, dy.shape[2:], step)]
    return _packed(dy, p.groups, shape, at, step, block), (at[0], ends[0], at[1], ends[1])


def _correlate_dy(spread, w, groups, out, origin, dilation, taps, place, data):
    """out's pixels at ``place`` (``_tile_forward``'s) = the stride-1 'full' correlation, from
    pixel ``origin``, of dy laid out by ``_dy_layout`` (its pixels within ``data``, the rest
    zeros) with w's ``taps`` (r0, s0, dr, ds: the kernel flipped, or a phase's taps flipped) and
    its channel axes swapped: by channel tiles, or lane by lane where a group has few input
    channels (they are out's channels)."""
    K, Cg = w.shape[:2]
    if not _by_lanes(Cg, K // groups):
        Kg = K // groups
        _tile_forward(spread, _packed_weights(w, groups, True, taps, _block(Kg)), out, *origin, 1, 1, *dilation, 1, Kg, place, data)
        return
    wt = _packed_weights(w, groups, True, taps, TILE_CHANNELS)  # (G, C blocks, R, S, Kp, TILE_CHANNELS)
    G, ncb, R, S, Kp, _ = wt.shape
    wt = np.ascontiguousarray(wt.transpose(0, 1, 5, 2, 3, 4).reshape(G, ncb * TILE_CHANNELS, R, S, Kp)[:, : _round_up(Cg, 2)])
    _lane_tile_forward(spread, wt, out, *origin, 1, 1, *dilation, place, data)


def _tiles_weight_gradient(dy, xb, stride, split, p):
    """dw by ``_tile_weight_gradient``, along input channels where x's blocks fill a vector; else
    along output channels, its rows over input channels, or over taps where more of them would be
    real (a first layer's 3 channels and 7 taps a row)."""
    Cg, TP = p.C // p.groups, TILE_PIXELS
    by_taps = p.S / (split * _round_up(-(-p.S // split), TP)) > Cg / _round_up(Cg, TP)
    mode = DW_TAPS if by_taps else DW_INPUTS if xb.shape[5] == TILE_CHANNELS else DW_CHANNELS
    dyb = _packed(dy, p.groups, (p.N, p.out_h, p.out_w), block=TP if mode == DW_INPUTS else TILE_CHANNELS)
    image = (math.prod(xb.shape[2:]) // xb.shape[3] + math.prod(dyb.shape[2:]) // dyb.shape[3]) * dy.itemsize
    images = max(1, DW_CHUNK_BYTES // image)  # a block of x and of dy, per image
    dw = np.empty((-(-p.N // images), p.K, Cg, p.R, p.S), dtype=dy.dtype)
    _tile_weight_gradient(xb, dyb, dw, *stride, *p.dilation, split, mode, images)
    return dw[0] if len(dw) == 1 else dw.sum(axis=0)


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
            dw_out[k, c, r, s0 + ss] = _lane_sum(acc, ss)


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
    """y = the windows' maxima; argmax = where each lies in the padded plane, relative to its
    window's first pixel (r * width + s), so that the backward pass adds without a division."""
    N, C, Ho, Wo = y.shape
    width = xpad.shape[3]
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
                t = r * width + s
                for j in range(Wo):
                    v, b = xrow[j * sw + s], best[j]
                    mask = -np.int64((v > b) | ((v != v) & (b == b)))  # all ones where v wins
                    best_t[j] = (t & mask) | (best_t[j] & ~mask)
                    best[j] = max(b, v) if v == v else v


@njit(cache=True, parallel=True)
def _maxpool_backward(dy, argmax, dxpad, sh, sw):
    N, C, Ho, Wo = dy.shape
    width = dxpad.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        plane = dxpad[n, c].reshape(-1)
        for i in range(Ho):
            for j in range(Wo):
                plane[i * sh * width + j * sw + argmax[n, c, i, j]] += dy[n, c, i, j]


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
    not. numba compiles a read-only array as a signature of its own (2-5 CPU-s each: ``_pack``
    took four signatures where tests passed read-only inputs, not two), and types it in Python on
    every call, several microseconds that a tiny layer's call would show."""
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
    if "xb" in ctx.saved:
        dw = _tiles_weight_gradient(dy, ctx.saved["xb"], ctx.saved["stride"], ctx.saved["split"], p)
    else:
        dw = _rows_weight_gradient(dy, ctx.saved["xpad"], w, p, ctx.saved["pixels"])
    dx = None
    if need_dx:
        # The tiles' 'full' correlations multiply zeros of their own (the stride's gaps, the border),
        # which a NaN or Inf in w turns into NaN; dw is non-finite exactly when that can happen.
        if not finite_pair(dw, w):
            dx = _rows_input_gradient(dy, w, p)
        elif "xb" in ctx.saved:
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
    xpad = pad(x, p.padding, -np.inf) if any(p.padding) else _loop_input(x)  # read, never written
    _maxpool_forward(xpad, y, argmax, *p.kernel_size, *p.stride)
    return y, Context(name, "maxpool2d", p, {"argmax": argmax})


def maxpool2d_backward(dy, ctx):
    p = check_backward(dy, ctx, name, "maxpool2d")
    dxpad = padded_zeros(p)
    _maxpool_backward(_loop_input(dy), ctx.saved["argmax"], dxpad, *p.stride)
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
