"""Padding helpers shared by the backends (not by the reference, which keeps its own)."""

from __future__ import annotations

import numpy as np


def pad(x, padding: tuple[int, int], value: float = 0.0):
    """A fresh C-contiguous copy of x (N, C, H, W) with ``padding`` rows and columns of ``value`` on each side."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def padded_zeros(p):
    """Zeros shaped like the padded input of problem ``p``, in its dtype."""
    return np.zeros((p.N, p.C, p.H + 2 * p.padding[0], p.W + 2 * p.padding[1]), dtype=p.dtype)


def crop(xpad, p):
    """The unpadded part of a padded-input gradient, as a fresh array."""
    ph, pw = p.padding
    return xpad[:, :, ph : ph + p.H, pw : pw + p.W].copy()
