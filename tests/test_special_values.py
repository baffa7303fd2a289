"""NaN, Inf and huge finite values in the verification grid, for every backend and function.

The interface: a NaN or Inf reaches exactly the outputs (and gradients) whose defining sum holds
it, large finite values lose no more precision than the sum itself would, and nothing warns.
Each case plants one special value (NaN, +Inf, -Inf or 1e17) at a seeded position of one operand
(x, w or dy) of a grid case and holds the backend to the float64 reference on the same values:
the same NaNs, the same infinities, and every finite output within a float rounding bound of the
sum's size (the reference run on the absolute values), so a running sum that cancels 1e17
against its neighbours, or an Inf met by a zero the definition does not multiply, fails.
"""

from __future__ import annotations

import functools
import warnings
import zlib

import numpy as np
import pytest
from cases import (
    CONV_BACKENDS,
    CONV_CASES,
    DTYPES,
    POOL_CASES,
    conv_backend,
    conv_inputs,
    pool_inputs,
)

import kernels

pytestmark = pytest.mark.usefixtures("one_turn_tuning")  # auto's picks are not what these check

SPECIALS = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "1e17": 1e17}
RTOL = {np.float32: 1e-4, np.float64: 1e-12}  # of the sum of the terms' absolute values
# Every stride, dilation, padding and group shape of the grid, small enough for the naive loops.
CONV = [c for c in CONV_CASES if c.N * c.C * c.H * c.W <= 600]
POOL = [c for c in POOL_CASES if c.N * c.C * c.H * c.W <= 600]


def _seed(*parts) -> int:
    return zlib.crc32("/".join(parts).encode())


def _planted(a, special: float, seed: int):
    out = np.array(a, dtype=a.dtype)  # a writeable copy
    out.flat[np.random.default_rng(seed).integers(out.size)] = special
    return out


def _reference_conv(x, w, b, dy, params):
    ref = kernels.reference
    y, ctx = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                None if b is None else b.astype(np.float64), **params)
    return (y, *ref.conv2d_backward(dy.astype(np.float64), ctx))


@functools.cache
def _conv_expected(case, dtype, site: str, label: str) -> tuple:
    """(the reference's outputs, the sums' sizes) for ``case`` with ``label`` planted in ``site``:
    computed once per test process, shared by every backend's test."""
    x, w, b, dy = conv_inputs(case, dtype)
    args = {"x": x, "w": w, "dy": dy}
    args[site] = _planted(args[site], SPECIALS[label], _seed(case.id, site, label))
    expected = _reference_conv(args["x"], args["w"], b, args["dy"], case.params)
    scale = _reference_conv(*(np.abs(a) if a is not None else None for a in (args["x"], args["w"], b, args["dy"])),
                            case.params)
    return expected, scale


def _reference_pool(op, x, dy, kernel_size, params):
    ref = kernels.reference
    y, ctx = getattr(ref, f"{op}_forward")(x.astype(np.float64), kernel_size, **params)
    return y, getattr(ref, f"{op}_backward")(dy.astype(np.float64), ctx)


def _mismatch(got, expected, scale, dtype) -> str | None:
    """Why ``got`` breaks the rule against the float64 ``expected``, or None."""
    if got is None or expected is None:
        return None if got is None and expected is None else "an output is missing"
    got = np.asarray(got, dtype=np.float64)
    nan = np.isnan(expected)
    if not np.array_equal(np.isnan(got), nan):
        return f"NaN at {np.argwhere(np.isnan(got) != nan)[:3].tolist()} differs from the reference"
    inf = np.isinf(expected)
    if not np.array_equal(got[inf], expected[inf]) or np.isinf(got[~inf]).any():
        return f"Inf at {np.argwhere(np.isinf(got) != inf)[:3].tolist()} differs from the reference"
    finite = ~nan & ~inf
    bound = RTOL[dtype] * np.nan_to_num(scale[finite], posinf=0.0) + np.finfo(dtype).tiny
    error = np.abs(got[finite] - expected[finite])
    if (error > bound).any():
        worst = int(np.argmax(error - bound))
        return f"finite output off by {error[worst]:.3g} (allowed {bound[worst]:.3g}): precision lost"
    return None


def _check(call, expected, scale, dtype, what: str, failures: list) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            got = call()
        except Warning as warning:
            failures.append(f"{what}: warned: {warning}")
            return
    for name, g, e, s in zip(("y", "dx", "dw", "db"), got, expected, scale):
        why = _mismatch(g, e, s, dtype)
        if why:
            failures.append(f"{what} {name}: {why}")


def _conv_calls(be, x, w, b, dy, params):
    y, ctx = be.conv2d_forward(x, w, b, **params)
    return (y, *be.conv2d_backward(dy, ctx))


@pytest.mark.parametrize("backend", CONV_BACKENDS)
def test_conv2d_keeps_nan_inf_and_precision(backend, monkeypatch):
    be, failures = conv_backend(backend, monkeypatch), []
    for case in CONV:
        for dtype in DTYPES:
            x, w, b, dy = conv_inputs(case, dtype)
            for site in ("x", "w", "dy"):
                for label, special in SPECIALS.items():
                    args = {"x": x, "w": w, "dy": dy}
                    args[site] = _planted(args[site], special, _seed(case.id, site, label))
                    expected, scale = _conv_expected(case, dtype, site, label)
                    _check(lambda: _conv_calls(be, args["x"], args["w"], b, args["dy"], case.params),
                           expected, scale, dtype, f"{case.id} {np.dtype(dtype).name} {label} in {site}", failures)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("backend", kernels.names())
def test_pooling_keeps_nan_inf_and_precision(backend, op):
    be, failures = kernels.get(backend), []
    for case in POOL:
        for dtype in DTYPES:
            x, dy = pool_inputs(case, op, dtype)
            for site in ("x", "dy"):
                for label, special in SPECIALS.items():
                    args = {"x": x, "dy": dy}
                    args[site] = _planted(args[site], special, _seed(case.id, op, site, label))
                    expected = _reference_pool(op, args["x"], args["dy"], case.kernel_size, case.params)
                    # the sums' sizes: avg pooling's terms are |x| and |dy|; max pooling sums |dy| only
                    y_scale, dx_scale = _reference_pool(op, np.abs(args["x"]) if op == "avgpool2d" else args["x"],
                                                        np.abs(args["dy"]), case.kernel_size, case.params)
                    scale = (np.abs(y_scale), dx_scale)

                    def calls(a=args):
                        y, ctx = getattr(be, f"{op}_forward")(a["x"], case.kernel_size, **case.params)
                        return y, getattr(be, f"{op}_backward")(a["dy"], ctx)

                    _check(calls, expected, scale, dtype, f"{case.id} {np.dtype(dtype).name} {label} in {site}",
                           failures)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:20])
