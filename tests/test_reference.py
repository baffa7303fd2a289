"""The reference checked on its own: against the interface's formulas written as scalar loops,
against hand-worked examples, and its backward pass against central finite differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cases import ConvCase, PoolCase

from kernels import reference

FD_CONV_CASES = [
    ConvCase(2, 2, 5, 6, 3, 3, 2, stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    ConvCase(1, 4, 6, 6, 4, 3, 3, stride=1, padding=1, dilation=2, groups=2),
    ConvCase(1, 3, 5, 5, 3, 2, 2, stride=2, padding=1, groups=3),
    ConvCase(1, 2, 6, 5, 2, 3, 3, stride=2, padding=(0, 1, 2, 0)),  # (top, bottom, left, right)
]
FD_POOL_CASES = [
    PoolCase(2, 2, 7, 7, 3, stride=2),
    PoolCase(1, 2, 6, 5, (2, 3), stride=(1, 2), padding=(1, 1)),
    PoolCase(1, 2, 6, 7, 3, stride=2, padding=(1, 0, 0, 1)),
]


def conv_arrays(case, rng):
    """Normal float64 x, w and b for a conv case."""
    x = rng.standard_normal((case.N, case.C, case.H, case.W))
    w = rng.standard_normal((case.K, case.C // case.groups, case.R, case.S))
    return x, w, rng.standard_normal(case.K)


def conv_by_definition(x, w, b, stride, padding, dilation, groups):
    """The interface's formula, one scalar at a time; ``padding`` is (top, bottom, left, right)."""
    (sh, sw), (top, bottom, left, right), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xpad = np.zeros((N, C, H + top + bottom, W + left + right))
    xpad[:, :, top : top + H, left : left + W] = x
    Ho = (H + top + bottom - dh * (R - 1) - 1) // sh + 1
    Wo = (W + left + right - dw * (S - 1) - 1) // sw + 1
    y = np.zeros((N, K, Ho, Wo))
    for n, k, i, j in itertools.product(range(N), range(K), range(Ho), range(Wo)):
        g = k // (K // groups)
        total = b[k] if b is not None else 0.0
        for c, r, s in itertools.product(range(Cg), range(R), range(S)):
            total += w[k, c, r, s] * xpad[n, g * Cg + c, i * sh + r * dh, j * sw + s * dw]
        y[n, k, i, j] = total
    return y


@pytest.mark.parametrize("case", FD_CONV_CASES, ids=lambda c: c.id)
def test_conv_forward_is_the_definition(case):
    x, w, b = conv_arrays(case, np.random.default_rng(0))
    y, _ = reference.conv2d_forward(x, w, b, **case.params)
    pairs = {k: (v, v) if isinstance(v, int) else v for k, v in case.params.items() if k != "groups"}
    padding = pairs["padding"]  # as (top, bottom, left, right)
    pairs["padding"] = padding if len(padding) == 4 else (padding[0], padding[0], padding[1], padding[1])
    np.testing.assert_allclose(y, conv_by_definition(x, w, b, **pairs, groups=case.groups), rtol=1e-12)


def test_conv_hand_example():
    # 3x3 image 1..9, 2x2 kernel [[1, 0], [0, -1]]: each output is top-left minus bottom-right = -4.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    y, _ = reference.conv2d_forward(x, w, np.array([0.5]))
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -3.5))


def test_maxpool_ties_go_to_the_first_in_row_major_order():
    x = np.array([[[[1.0, 2.0, 2.0], [2.0, 0.0, 2.0], [1.0, 1.0, 1.0]]]])
    y, ctx = reference.maxpool2d_forward(x, 2, stride=1)
    np.testing.assert_array_equal(y[0, 0], [[2.0, 2.0], [2.0, 2.0]])
    dx = reference.maxpool2d_backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), ctx)
    # window (0,0) -> (0,1); (0,1) -> (0,1); (1,0) -> (1,0); (1,1) -> (1,2)
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 11.0, 0.0], [100.0, 0.0, 1000.0], [0.0, 0.0, 0.0]])


def test_maxpool_padding_is_minus_infinity_and_nan_propagates():
    x = -np.ones((1, 1, 2, 2))
    x[0, 0, 1, 1] = np.nan
    y, _ = reference.maxpool2d_forward(x, 2, stride=1, padding=1)
    expected = np.array([[-1.0, -1.0, -1.0], [-1.0, np.nan, np.nan], [-1.0, np.nan, np.nan]])
    np.testing.assert_array_equal(y[0, 0], expected)


def test_avgpool_counts_padding_in_the_divisor():
    y, _ = reference.avgpool2d_forward(np.ones((1, 1, 2, 2)), 2, stride=1, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def numerical_gradient(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of a (in place)."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        saved = a[idx]
        a[idx] = saved + eps
        up = f()
        a[idx] = saved - eps
        down = f()
        a[idx] = saved
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", FD_CONV_CASES, ids=lambda c: c.id)
def test_conv_backward_matches_finite_differences(case):
    rng = np.random.default_rng(1)
    x, w, b = conv_arrays(case, rng)
    y, ctx = reference.conv2d_forward(x, w, b, **case.params)
    dy = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(reference.conv2d_forward(x, w, b, **case.params)[0] * dy))

    dx, dw, db = reference.conv2d_backward(dy, ctx)
    for name, analytic, wrt in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("case", FD_POOL_CASES, ids=lambda c: c.id)
def test_pool_backward_matches_finite_differences(case, op):
    rng = np.random.default_rng(2)
    # Distinct values far apart: no ties and no kinks within eps, so max pooling is smooth here.
    x = rng.permutation(case.N * case.C * case.H * case.W).reshape(case.N, case.C, case.H, case.W) * 0.1
    forward = getattr(reference, f"{op}_forward")
    y, ctx = forward(x, case.kernel_size, **case.params)
    dy = rng.standard_normal(y.shape)
    dx = getattr(reference, f"{op}_backward")(dy, ctx)

    def loss():
        return float(np.sum(forward(x, case.kernel_size, **case.params)[0] * dy))

    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)


def test_finite_differences_catch_a_wrong_gradient():
    """The finite-difference check can fail: a gradient off by one tap is caught."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 4, 4))
    w = rng.standard_normal((1, 1, 2, 2))
    y, ctx = reference.conv2d_forward(x, w)
    dy = rng.standard_normal(y.shape)
    _, dw, _ = reference.conv2d_backward(dy, ctx)
    numeric = numerical_gradient(lambda: float(np.sum(reference.conv2d_forward(x, w)[0] * dy)), w)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(np.roll(dw, 1), numeric, rtol=1e-6, atol=1e-7)
