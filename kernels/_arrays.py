"""Padding helpers shared by the backends (not by the reference, which keeps its own)."""

from __future__ import annotations

import numpy as np


def pad(x, padding: tuple[int, int], value: float = 0.0):
    """A fresh C-contiguous copy of x (N, C, H, W) with ``padding`` rows and columns of ``value`` on each side.

    Written out rather than ``np.pad``, whose generality costs about 40 µs a call: more than a
    whole tiny convolution."""
    ph, pw = padding
    N, C, H, W = x.shape
    out = np.empty((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + H, pw : pw + W] = x
    if ph:
        out[:, :, :ph] = value
        out[:, :, ph + H :] = value
    if pw:
        out[:, :, ph : ph + H, :pw] = value
        out[:, :, ph : ph + H, pw + W :] = value
    return out


def padded_zeros(p):
    """Zeros shaped like the padded input of problem ``p``, in its dtype."""
    return np.zeros((p.N, p.C, p.H + 2 * p.padding[0], p.W + 2 * p.padding[1]), dtype=p.dtype)


def crop(xpad, p):
    """The unpadded part of a padded-input gradient, as a fresh array."""
    ph, pw = p.padding
    return xpad[:, :, ph : ph + p.H, pw : pw + p.W].copy()


def taps(a, p):
    """For each kernel tap (r, s) of problem ``p`` (conv or pool), in row-major order: (r, s, the
    view of the padded array ``a`` that the tap meets, one element per output pixel), that is
    view[n, c, i, j] = a[n, c, i*sh + r*dh, j*sw + s*dw]."""
    R, S = getattr(p, "kernel_size", None) or (p.R, p.S)
    (sh, sw), (dh, dw) = p.stride, getattr(p, "dilation", (1, 1))
    for r in range(R):
        for s in range(S):
            rows = slice(r * dh, r * dh + sh * (p.out_h - 1) + 1, sh)
            columns = slice(s * dw, s * dw + sw * (p.out_w - 1) + 1, sw)
            yield r, s, a[:, :, rows, columns]
