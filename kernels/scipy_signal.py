"""scipy.signal correlations, two methods chosen per problem; pooling by scipy.ndimage.

**FFT** (problems of more than DIRECT_WORK multiply-adds): the whole batch at once, in
overlap-save tiles (``scipy.signal.oaconvolve``'s idea, batched). The padded input is cut into
overlapping tiles of a small transform size (8 to 64, or one transform of ``next_fast_len``,
whichever covers the plane with the fewest points), every tile and every (flipped, dilated)
filter is transformed once with ``scipy.fft.rfft2``, and the sum over input channels is one
matrix product per frequency (Mathieu, Henaff and LeCun 2014), over every image and tile at
once. Small transforms keep the filters' spectra small: 3x3 filters transformed at the image's
size cost more than the whole product. A strided layer without dilation is split into stride
phases taken as channels (``_polyphase``: phase (a, b) of the input meets only the taps
(a + sh*t, b + sw*u)), a stride-1 layer with sh*sw times the channels and a quarter of the
taps at stride 2, so that only the strided outputs are made (ResNet-50's 7x7 / 2 first layer at
batch 1: 207 -> 59 ms fwd+bwd); a dilated strided layer's stride-1 result is kept at every
stride-th position.
``dx`` is the same on the output gradient spread to stride spacing and padded (a 'full'
convolution, filters flipped and channel axes swapped); ``dw`` reuses the input tiles' spectra
against the conjugate spectra of the output gradient's tiles (a correlation summed over images
and tiles). Transforms run in the inputs' precision: float32 results are within about 1e-6 of
the largest output (INTERFACE.md allows about 1e-4), float64 within about 1e-14.

**Direct** (small problems, and inputs that FFT rounding would not serve): each output plane is
the sum over its group's input channels of a 'valid' ``scipy.signal.correlate2d`` of the padded
plane with the dilated filter, kept at every stride-th position (seed 000's method). Backward,
with ``dy_up`` the output gradient spread back out to stride spacing (zeros between): ``dx`` is
a 'full' ``convolve2d`` of ``dy_up`` with the dilated filter, ``dw`` a 'valid' ``correlate2d``
of the padded input with ``dy_up``, kept at every dilation-th offset. Direct sums are exact on
integer-valued inputs.

**Pointwise** (1x1 filters, whatever ``VARIANT`` says for the others): a 1x1 correlation of a
plane is a scaling, so the layer is only its sum over input channels: one matrix product per
group, ``w`` (K, C) against the input's stride-th pixels (C, pixels), backward the two
transposed products. scipy.signal has nothing better for it: the direct method makes one
``correlate2d`` call per plane pair (262,144 of them on a 256 -> 1024 ResNet-50 layer, 324 ms
where im2col took 0.56 ms) and the FFT transforms a filter of one tap. The products are numpy's
(its BLAS), and only the definition's own products are made: exact on integer-valued inputs,
NaN and Inf where the definition puts them.

Where scipy.signal falls behind a matrix product, by its nature: its correlations are of one
plane with one filter, so the sum over channels is the FFT's product per frequency or one
``correlate2d`` per plane pair. The FFT pays a transform per channel and tile and a spectrum per
filter whatever the filter's size, which outweighs the sum itself where planes are small and
channels many (ResNet-50's 3x3 layers on 7x7 planes, 512 -> 512: 18x to 20x im2col at batch
1) or filters small and channels few (MobileNet's first layer, 3 -> 32, 3x3 / 2: 9x, on its
stride phases), and the direct sums there are slower still (a 7x7 plane's 262,144 plane pairs:
25x the FFT). Where the FFT's work is small (DIRECT_WORK) or a filter is 1x1 (pointwise, above) it is not taken.

NaN, Inf and huge values (INTERFACE.md): an FFT spreads any value over every output, so the FFT
is taken only when every operand is finite and no value dominates its array
(``_well_scaled``); otherwise the direct method. The direct method's zeros between taps and its
'full' correlation's border are products the definition does not have: exact zeros for finite
inputs, but NaN against an Inf. Where a NaN or Inf would meet them (``x`` or ``w`` when dilated;
``w``, ``dy``, or ``x`` when strided, in the backward pass) the call takes the definition's sums
tap by tap instead (``kernels._arrays``). Average pooling sums each window directly
(``ndimage.correlate1d`` with ones): a running sum would carry a NaN, an Inf or the rounding of
a huge value along the rest of the row.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import fft, ndimage

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
from kernels._checks import Context, check_backward, check_conv2d, check_pool2d, padded_size
from kernels.traits import Traits

name = "scipy"
description = ("scipy FFTs of the whole batch with the channel sum in the frequency domain, or "
               "scipy.signal.correlate2d per plane for small problems, a channel product for 1x1 filters; "
               "pooling with scipy.ndimage")
TRAITS = Traits(exact=False)

# Which method conv2d takes: "auto" (`_method`), or one of VARIANTS for every call (the tests
# verify each on the whole grid).
VARIANTS = ("direct", "fft")
VARIANT = "auto"
# Up to this many multiply-adds the direct method costs less than the FFT path's fixed costs
# (interleaved A/B, 2 threads): LeNet-5's conv1 at batch 1 (117,600) ran 1.10-1.24x slower by
# FFT, seed002's conv (172,800) 1.36x faster.
DIRECT_WORK = 150_000
# FFT rounding is relative to an array's largest values: a value this many times the mean
# magnitude of the others would swamp the small outputs, so such inputs take direct sums.
DOMINANCE = 2.0**20


def _method(p, *arrays):
    """'pointwise', 'fft' or 'direct' for problem ``p`` with operands ``arrays`` (see the module's
    docstring)."""
    if p.R == p.S == 1:
        return "pointwise"
    if VARIANT != "auto":
        method = VARIANT
    else:
        work = p.N * p.K * (p.C // p.groups) * p.out_h * p.out_w * p.R * p.S
        method = "direct" if work <= DIRECT_WORK else "fft"
    return "fft" if method == "fft" and _well_scaled(*arrays) else "direct"


def _well_scaled(*arrays) -> bool:
    """True when every array is finite and its largest magnitude is at most DOMINANCE times the
    mean magnitude of its other elements."""
    for a in arrays:
        magnitude = np.abs(a)
        top = float(magnitude.max())
        rest = (float(magnitude.sum(dtype=np.float64)) - top) / max(a.size - 1, 1)
        if not np.isfinite(top) or top > DOMINANCE * rest:
            return False
    return True


# Transform sizes a tiling may use along an axis (all fast for pocketfft); a plane that fits one
# transform of its own next_fast_len is a candidate too.
FFT_SIZES = (8, 12, 16, 24, 32, 48, 64)
FFT_NS, MAC_NS = 1.0, 0.25  # ns per transform point and log2(points); per complex multiply-add


class _Tiles(NamedTuple):
    """Overlap-save tiling of a stride-1 correlation's outputs: tile (u, v) holds outputs
    [u*th, (u+1)*th) x [v*tw, (v+1)*tw), computed by one transform of ``size`` over the input
    that starts at the same offset."""

    size: tuple[int, int]
    tile: tuple[int, int]
    count: tuple[int, int]


def _tiling(out: tuple[int, int], reach: tuple[int, int], transforms: int, products: int, filter_taps: int) -> _Tiles:
    """The transform size (per axis: one of FFT_SIZES or the whole plane's next_fast_len) that
    costs least for ``out`` outputs of a kernel ``reach`` wide, by a cost model of pocketfft and
    matrix products on this machine: ``transforms`` per tile, ``products`` complex multiply-adds
    per tile and frequency, ``filter_taps`` (taps of all filters) multiply-adds per frequency."""
    axes = []
    for axis, (n, k) in enumerate(zip(out, reach)):
        sizes = {P for P in (*FFT_SIZES, fft.next_fast_len(n + k - 1, real=bool(axis))) if P >= k}
        axes.append([(P, P - k + 1, -(-n // (P - k + 1))) for P in sorted(sizes)])

    def cost(h, w):
        (Ph, _, Th), (Pw, _, Tw) = h, w
        tiles, frequencies = Th * Tw, Ph * (Pw // 2 + 1)
        transform_ns = FFT_NS * Ph * Pw * math.log2(Ph * Pw) * tiles * transforms
        return transform_ns + MAC_NS * frequencies * (tiles * products + filter_taps)

    (Ph, th, Th), (Pw, tw, Tw) = min(((h, w) for h in axes[0] for w in axes[1]), key=lambda hw: cost(*hw))
    return _Tiles((Ph, Pw), (th, tw), (Th, Tw))


def _tile_spectra(a, t: _Tiles, overlap: bool = True):
    """Spectra (N, C, tiles, Ph, Pw//2+1) of the tiles of a (N, C, H, W), zeros beyond it: input
    tiles (the transform size, overlapping) or, with ``overlap=False``, output-sized tiles."""
    N, C, H, W = a.shape
    (Ph, Pw), (th, tw), (Th, Tw) = t
    span_h, span_w = (Ph, Pw) if overlap else (th, tw)
    padded = np.zeros((N, C, (Th - 1) * th + span_h, (Tw - 1) * tw + span_w), dtype=a.dtype)
    padded[:, :, :H, :W] = a
    sN, sC, sH, sW = padded.strides
    tiles = as_strided(padded, (N, C, Th, Tw, span_h, span_w), (sN, sC, sH * th, sW * tw, sH, sW), writeable=False)
    return fft.rfft2(tiles, s=(Ph, Pw)).reshape(N, C, Th * Tw, Ph, Pw // 2 + 1)


def _dft(P: int, n: int, half: bool = False):
    """The first ``n`` columns of the P-point DFT matrix (rows: its P frequencies, or the
    P // 2 + 1 of a real transform's last axis), in complex128."""
    frequencies = np.arange(P // 2 + 1 if half else P)[:, None]
    return np.exp(-2j * np.pi * frequencies * np.arange(n) / P)


def _filter_spectra(w, size, groups: int):
    """rfft2(w, s=size) of filters w (G*Kg, Cg, R, S), laid out (G, frequencies, Cg, Kg) for the
    product per frequency: one matrix product with the R*S columns of the DFT matrix that the
    taps meet. Transforms one filter at a time cost far more (262,144 of them in one ResNet-18
    layer)."""
    (Ph, Pw), (K, Cg, R, S) = size, w.shape
    dft = np.einsum("ar,bs->abrs", _dft(Ph, R), _dft(Pw, S, half=True)).reshape(-1, R * S)  # (F, taps)
    taps = w.reshape(groups, K // groups, Cg, R * S).transpose(0, 3, 2, 1).reshape(groups, R * S, -1)
    return (dft.astype(np.result_type(w.dtype, np.complex64)) @ taps).reshape(groups, -1, Cg, K // groups)


def _filter_taps(spectra, size, taps):
    """Filters (G*Kg, Cg, R, S) = irfft2(spectra, s=size)[..., :R, :S] from spectra laid out
    (G, frequencies, Kg, Cg), as one matrix product: only the R x S taps are wanted."""
    (Ph, Pw), (R, S), (G, F, Kg, Cg) = size, taps, spectra.shape
    halves = np.where((np.arange(Pw // 2 + 1) == 0) | (2 * np.arange(Pw // 2 + 1) == Pw), 1.0, 2.0)  # Hermitian
    inverse = np.einsum("ar,bs->rsab", np.conj(_dft(Ph, R)) / Ph, np.conj(_dft(Pw, S, half=True)) * halves[:, None] / Pw)
    inverse = inverse.reshape(R * S, F)
    out = (inverse.astype(spectra.dtype) @ spectra.reshape(G, F, Kg * Cg)).real
    return out.reshape(G, R, S, Kg, Cg).transpose(0, 3, 4, 1, 2).reshape(G * Kg, Cg, R, S)


def _per_frequency(a, groups: int):
    """(N, G*Ca, T, F...) as (G, F, N*T, Ca): one matrix per group and frequency."""
    N, C, T = a.shape[:3]
    return a.reshape(N, groups, C // groups, T, -1).transpose(1, 4, 0, 3, 2).reshape(groups, -1, N * T, C // groups)


def _correlate(a, w, out: tuple[int, int], groups: int):
    """y[n, g*Kb + k, i, j] = sum over c, r, s of a[n, g*Ca + c, i + r, j + s] * w[g*Kb + k, c, r, s]
    for i, j < ``out``, tile by tile: the sum over c is a matrix product per frequency (Mathieu,
    Henaff and LeCun 2014). Returns y, a's tile spectra and the tiling."""
    N, K, (R, S) = a.shape[0], w.shape[0], w.shape[2:]
    t = _tiling(out, (R, S), N * (a.shape[1] + K), N * w.shape[1] * K, w.size)
    (Ph, Pw), (th, tw), (Th, Tw) = t
    A = _tile_spectra(a, t)
    Wf = _filter_spectra(w[:, :, ::-1, ::-1], (Ph, Pw), groups)
    Y = (_per_frequency(A, groups) @ Wf).reshape(groups, Ph, Pw // 2 + 1, N, Th * Tw, K // groups)
    y = fft.irfft2(Y.transpose(3, 0, 5, 4, 1, 2), s=(Ph, Pw))[..., R - 1 : R - 1 + th, S - 1 : S - 1 + tw]
    y = y.reshape(N, K, Th, Tw, th, tw).transpose(0, 1, 2, 4, 3, 5).reshape(N, K, Th * th, Tw * tw)
    return y[:, :, : out[0], : out[1]], A, t


PHASED_CHANNELS = 16  # a group's channels times the stride's phases, at most, for _polyphase


def _polyphase(p):
    """The stride-1 problem that a strided, undilated layer ``p`` is once its padded input and its
    filters are split into stride phases taken as channels (``_phases``): phase (a, b) of the
    input, pixels (a + sh*m, b + sw*n), meets only the taps (a + sh*t, b + sw*u), so the layer is
    the sum over phases of stride-1 correlations, each of a quarter of the input with a quarter
    of the taps at stride 2, and the FFT makes the strided layer's outputs only, not the
    stride-1 outputs it would keep one in four of. But the phases multiply a group's channels,
    and with them the filters' spectra (their zero-padded taps too), which outweigh the outputs
    saved once a group has many channels (ResNet-18's 3x3 / 2 layers at batch 1, AMD EPYC, 2
    threads: 64 -> 128 channels 17.2 -> 18.6 ms, 128 -> 256 28 -> 42 ms; 3 -> 64, 7x7 / 2 68 -> 18
    ms): so only where a group's phased channels are at most PHASED_CHANNELS. None there, and
    where the layer is not strided, or dilated."""
    (sh, sw), Cg = p.stride, p.C // p.groups
    if p.stride == (1, 1) or p.dilation != (1, 1) or Cg * sh * sw > PHASED_CHANNELS:
        return None
    (Hp, Wp), Rq, Sq = padded_size(p), -(-p.R // sh), -(-p.S // sw)
    H, W = max(-(-Hp // sh), p.out_h + Rq - 1), max(-(-Wp // sw), p.out_w + Sq - 1)
    return replace(p, C=p.C * sh * sw, H=H, W=W, R=Rq, S=Sq, stride=(1, 1), padding=(0, 0, 0, 0),
                   out_h=H - Rq + 1, out_w=W - Sq + 1)


def _phases(a, stride, size):
    """(N, C, H, W) as (N, C*sh*sw, size...): each group's channels followed by their stride
    phases, a[n, c, a_ + sh*m, b + sw*n] at channel (c, a_, b), zeros past the array."""
    (sh, sw), (N, C) = stride, a.shape[:2]
    out = np.zeros((N, C, sh, sw, *size), dtype=a.dtype)
    for ph in range(sh):
        for pw in range(sw):
            part = a[:, :, ph::sh, pw::sw][:, :, : size[0], : size[1]]
            out[:, :, ph, pw, : part.shape[2], : part.shape[3]] = part
    return out.reshape(N, C * sh * sw, *size)


def _unphase(a, stride, shape):
    """The inverse of ``_phases`` into zeros of ``shape`` (N, C, H, W)."""
    (sh, sw), (N, C, H, W) = stride, shape
    parts = a.reshape(N, C, sh, sw, *a.shape[2:])
    out = np.zeros(shape, dtype=a.dtype)
    for ph in range(sh):
        for pw in range(sw):
            target = out[:, :, ph::sh, pw::sw]
            target[...] = parts[:, :, ph, pw, : target.shape[2], : target.shape[3]]
    return out


def _fft_forward(xpad, w_dilated, p):
    q = _polyphase(p)
    if q is not None:
        y, spectra = _fft_forward(_phases(xpad, p.stride, (q.H, q.W)),
                                  _phases(w_dilated, p.stride, (q.R, q.S)), q)
        return y[:, :, : p.out_h, : p.out_w], spectra
    R, S = w_dilated.shape[2:]
    out = (xpad.shape[2] - R + 1, xpad.shape[3] - S + 1)  # stride 1, kept at every stride-th below
    y, A, tiles = _correlate(xpad, w_dilated, out, p.groups)
    (sh, sw) = p.stride
    return y[:, :, ::sh, ::sw][:, :, : p.out_h, : p.out_w].astype(p.dtype), (A, tiles)


def _fft_backward(dy, spectra, padded, w_dilated, p, need_dx):
    """(dx, dw) of the FFT path; ``padded`` is the padded input's shape, dx's before its crop."""
    q = _polyphase(p)
    if q is not None:  # the stride-1 problem's gradients, taken back out of their phases
        dyq = np.zeros(q.y_shape, dtype=dy.dtype)
        dyq[:, :, : p.out_h, : p.out_w] = dy
        wq = _phases(w_dilated, p.stride, (q.R, q.S))
        dxq, dwq = _fft_backward(dyq, spectra, (p.N, q.C, q.H, q.W), wq, q, need_dx)
        dx = None if dxq is None else crop(_unphase(dxq, p.stride, padded), p)
        return dx, _unphase(dwq, p.stride, w_dilated.shape)
    A, tiles = spectra
    G, (R, S) = p.groups, w_dilated.shape[2:]
    dy_up = _spread(dy, p.stride)
    dx = None
    if need_dx:
        # a 'full' convolution of dy_up with w: the correlation of dy_up, padded by the kernel's
        # reach, with w flipped and each group's channel axes swapped
        border = np.zeros((p.N, p.K, dy_up.shape[2] + 2 * (R - 1), dy_up.shape[3] + 2 * (S - 1)), dtype=p.dtype)
        border[:, :, R - 1 : R - 1 + dy_up.shape[2], S - 1 : S - 1 + dy_up.shape[3]] = dy_up
        swapped = w_dilated[:, :, ::-1, ::-1].reshape(G, p.K // G, p.C // G, R, S).swapaxes(1, 2)
        full_h, full_w = dy_up.shape[2] + R - 1, dy_up.shape[3] + S - 1
        dx_full, _, _ = _correlate(border, swapped.reshape(p.C, p.K // G, R, S), (full_h, full_w), G)
        dxpad = np.zeros(padded, dtype=p.dtype)
        dxpad[:, :, :full_h, :full_w] = dx_full
        dx = crop(dxpad, p)
    # dw[k, c] = the correlation of x[n, c] with dy_up[n, k], summed over images and tiles: the
    # input tiles' spectra against the conjugate of the output gradient's, per frequency
    DY = _tile_spectra(dy_up, tiles, overlap=False).conj()
    (Ph, Pw) = tiles.size
    dyc = _per_frequency(DY, G).swapaxes(2, 3)  # (G, F, Kb, N*T)
    dw_full = _filter_taps(dyc @ _per_frequency(A, G), (Ph, Pw), (R, S))
    (dh, dw_) = p.dilation
    return dx, dw_full[:, :, ::dh, ::dw_].astype(p.dtype)


def _strided_pixels(xpad, p):
    """The padded input at every stride-th pixel that a 1x1 filter meets, (N, G, Cg, pixels)."""
    sh, sw = p.stride
    xs = xpad[:, :, ::sh, ::sw][:, :, : p.out_h, : p.out_w]
    return xs.reshape(p.N, p.groups, p.C // p.groups, p.out_h * p.out_w)


def _pointwise_forward(xpad, w, p):
    """y[n, g] = w[g] (Kg, Cg) @ x[n, g] (Cg, pixels): a 1x1 filter's layer."""
    w3 = w.reshape(p.groups, p.K // p.groups, p.C // p.groups)
    return np.matmul(w3, _strided_pixels(xpad, p)).reshape(p.y_shape)


def _pointwise_backward(dy, xpad, w, p, need_dx):
    """dx and dw of a 1x1 filter's layer: dw[g] = dy[g] @ x[g]^T summed over the batch (one
    product over every image's pixels), dx at the stride-th pixels = w[g]^T @ dy[n, g], zero
    between them (no filter tap reaches those)."""
    G, Kg, Cg, P = p.groups, p.K // p.groups, p.C // p.groups, p.out_h * p.out_w
    xs = _strided_pixels(xpad, p)
    d3 = dy.reshape(p.N, G, Kg, P)
    over_batch = d3.transpose(1, 2, 0, 3).reshape(G, Kg, p.N * P)
    dw = (over_batch @ xs.transpose(1, 0, 3, 2).reshape(G, p.N * P, Cg)).reshape(p.K, Cg, 1, 1)
    dx = None
    if need_dx:
        dxpad = np.zeros_like(xpad)
        sh, sw = p.stride
        dxpad[:, :, ::sh, ::sw][:, :, : p.out_h, : p.out_w] = (
            np.matmul(w.reshape(G, Kg, Cg).swapaxes(1, 2), d3).reshape(p.N, p.C, p.out_h, p.out_w))
        dx = crop(dxpad, p)
    return dx, dw


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
    spectra, method = None, _method(p, x, w)
    if method == "pointwise":
        y = _pointwise_forward(xpad, w, p)
    elif method == "fft":
        y, spectra = _fft_forward(xpad, w_dilated, p)
    elif p.dilation != (1, 1) and not finite(x, w):
        y = tap_forward(xpad, w, p)
    else:
        from scipy import signal  # here, not above: importing scipy.signal takes 1-2 s, and only this path needs it

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
    return y, Context(name, "conv2d", p, {"xpad": xpad, "w_dilated": w_dilated, "spectra": spectra})


@quiet
def conv2d_backward(dy, ctx, *, need_dx=True):
    p = check_backward(dy, ctx, name, "conv2d", need_dx)
    xpad, w_dilated, spectra = ctx.saved["xpad"], ctx.saved["w_dilated"], ctx.saved["spectra"]
    db = dy.sum(axis=(0, 2, 3)) if p.has_bias else None
    method = _method(p, dy)
    if method == "pointwise":
        return (*_pointwise_backward(dy, xpad, w_dilated, p, need_dx), db)
    if spectra is not None and method == "fft":
        return (*_fft_backward(dy, spectra, xpad.shape, w_dilated, p, need_dx), db)
    from scipy import signal  # see conv2d_forward

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
    (ph, _, pw, _), (Hp, Wp) = p.padding, padded_size(p)
    # dx[q] is the stride-spread gradient summed over the R x S positions ending at q, over R*S:
    # spread dy, shift it by (R-1, S-1), and the window starting at q collects it.
    dy_up = _spread(dy, p.stride)
    shifted = np.zeros((p.N, p.C, Hp + R - 1, Wp + S - 1), dtype=p.dtype)
    shifted[:, :, R - 1 : R - 1 + dy_up.shape[2], S - 1 : S - 1 + dy_up.shape[3]] = dy_up
    sums = _window_sums(shifted, (R, S))
    starts = sums[:, :, R // 2 :, S // 2 :]  # the window starting at q is reported at q + R//2
    return starts[:, :, ph : ph + p.H, pw : pw + p.W] / (R * S)
