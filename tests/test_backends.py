"""Every backend x every function x the case grid, against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from cases import (
    CONV_BACKENDS,
    CONV_CASES,
    DTYPES,
    POOL_CASES,
    assert_matches,
    conv_backend,
    conv_expected,
    conv_inputs,
    exact,
    pool_expected,
    pool_inputs,
)

import kernels

pytestmark = pytest.mark.usefixtures("one_turn_tuning")  # auto's picks are not what these check

POOL_OPS = ("maxpool2d", "avgpool2d")

backends = pytest.mark.parametrize("backend", kernels.names())
conv_backends = pytest.mark.parametrize("backend", CONV_BACKENDS)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
conv_cases = pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
pool_cases = pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
pool_ops = pytest.mark.parametrize("op", POOL_OPS)


@dtypes
@conv_cases
@conv_backends
def test_conv2d_forward(backend, case, dtype, monkeypatch):
    x, w, b, _ = conv_inputs(case, dtype)
    y, _ = conv_backend(backend, monkeypatch).conv2d_forward(x, w, b, **case.params)
    assert_matches(y, conv_expected(case, dtype)[0], "conv2d", dtype, "y", exact(backend))


@dtypes
@conv_cases
@conv_backends
def test_conv2d_backward(backend, case, dtype, monkeypatch):
    be = conv_backend(backend, monkeypatch)
    x, w, b, dy = conv_inputs(case, dtype)
    _, ctx = be.conv2d_forward(x, w, b, **case.params)
    dx, dw, db = be.conv2d_backward(dy, ctx)
    _, dx_ref, dw_ref, db_ref = conv_expected(case, dtype)
    assert_matches(dx, dx_ref, "conv2d", dtype, "dx", exact(backend))
    assert_matches(dw, dw_ref, "conv2d", dtype, "dw", exact(backend))
    assert_matches(db, db_ref, "conv2d", dtype, "db", exact(backend))


@conv_cases
@conv_backends
def test_conv2d_backward_without_dx(backend, case, monkeypatch):
    """need_dx=False: dx is None, and dw and db are those of the full backward pass, bit for bit."""
    be = conv_backend(backend, monkeypatch)
    x, w, b, dy = conv_inputs(case, np.float32)
    _, ctx = be.conv2d_forward(x, w, b, **case.params)
    dx, dw, db = be.conv2d_backward(dy, ctx, need_dx=False)
    _, ctx = be.conv2d_forward(x, w, b, **case.params)
    _, dw_all, db_all = be.conv2d_backward(dy, ctx)
    assert dx is None
    np.testing.assert_array_equal(dw, dw_all)
    if b is None:
        assert db is None and db_all is None
    else:
        np.testing.assert_array_equal(db, db_all)


@dtypes
@pool_cases
@pool_ops
@backends
def test_pool_forward(backend, op, case, dtype):
    x, _ = pool_inputs(case, op, dtype)
    y, _ = getattr(kernels.get(backend), f"{op}_forward")(x, case.kernel_size, **case.params)
    assert_matches(y, pool_expected(case, op, dtype)[0], op, dtype, "y")


@dtypes
@pool_cases
@pool_ops
@backends
def test_pool_backward(backend, op, case, dtype):
    be = kernels.get(backend)
    x, dy = pool_inputs(case, op, dtype)
    _, ctx = getattr(be, f"{op}_forward")(x, case.kernel_size, **case.params)
    dx = getattr(be, f"{op}_backward")(dy, ctx)
    assert_matches(dx, pool_expected(case, op, dtype)[1], op, dtype, "dx")
