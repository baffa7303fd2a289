"""Hypothesis draws further random valid problems; every backend must match the reference.

Examples per test come from the profile in conftest.py (40; 1000 with --hypothesis-profile thorough)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import ConvCase, PoolCase, assert_matches, random_array
from hypothesis import given
from hypothesis import strategies as st

import kernels

pytestmark = pytest.mark.usefixtures("one_turn_tuning")  # auto's picks are not what these check

backends = pytest.mark.parametrize("backend", kernels.names())

pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))


@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, dilation = draw(pairs), draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = draw(st.tuples(*[st.integers(0, 2)] * 4))  # (top, bottom, left, right)
    # smallest image whose padded size still holds the dilated kernel
    min_h = max(1, dilation[0] * (R - 1) + 1 - padding[0] - padding[1])
    min_w = max(1, dilation[1] * (S - 1) + 1 - padding[2] - padding[3])
    return ConvCase(
        N=draw(st.integers(1, 2)),
        C=groups * draw(st.integers(1, 3)),
        H=draw(st.integers(min_h, min_h + 6)),
        W=draw(st.integers(min_w, min_w + 6)),
        K=groups * draw(st.integers(1, 3)),
        R=R, S=S, stride=stride, padding=padding, dilation=dilation, groups=groups,
        bias=draw(st.booleans()),
    )


@st.composite
def pool_problems(draw):
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = tuple(draw(st.integers(0, half)) for half in (R // 2, R // 2, S // 2, S // 2))  # each side
    min_h, min_w = max(1, R - padding[0] - padding[1]), max(1, S - padding[2] - padding[3])
    return PoolCase(
        N=draw(st.integers(1, 2)),
        C=draw(st.integers(1, 3)),
        H=draw(st.integers(min_h, min_h + 6)),
        W=draw(st.integers(min_w, min_w + 6)),
        kernel_size=(R, S),
        stride=draw(st.one_of(st.none(), pairs)),
        padding=padding,
    )


dtypes = st.sampled_from([np.float32, np.float64])


@backends
@given(case=conv_problems(), dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(backend, case, dtype, seed):
    be, ref = kernels.get(backend), kernels.reference
    rng = np.random.default_rng(seed)
    x = random_array(rng, (case.N, case.C, case.H, case.W), dtype)
    w = random_array(rng, (case.K, case.C // case.groups, case.R, case.S), dtype)
    b = random_array(rng, (case.K,), dtype) if case.bias else None
    y, ctx = be.conv2d_forward(x, w, b, **case.params)
    dy = random_array(rng, y.shape, dtype)
    as64 = [None if a is None else a.astype(np.float64) for a in (x, w, b, dy)]
    y_ref, ctx_ref = ref.conv2d_forward(*as64[:3], **case.params)
    exact = kernels.traits(backend).exact
    assert_matches(y, y_ref, "conv2d", dtype, "y", exact)
    for what, got, expected in zip(("dx", "dw", "db"), be.conv2d_backward(dy, ctx), ref.conv2d_backward(as64[3], ctx_ref)):
        assert_matches(got, expected, "conv2d", dtype, what, exact)


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@backends
@given(case=pool_problems(), dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_pool_matches_reference(backend, op, case, dtype, seed):
    be, ref = kernels.get(backend), kernels.reference
    rng = np.random.default_rng(seed)
    x = random_array(rng, (case.N, case.C, case.H, case.W), dtype, values=(0, 2))
    y, ctx = getattr(be, f"{op}_forward")(x, case.kernel_size, **case.params)
    dy = random_array(rng, y.shape, dtype)
    y_ref, ctx_ref = getattr(ref, f"{op}_forward")(x.astype(np.float64), case.kernel_size, **case.params)
    assert_matches(y, y_ref, op, dtype, "y")
    dx_ref = getattr(ref, f"{op}_backward")(dy.astype(np.float64), ctx_ref)
    assert_matches(getattr(be, f"{op}_backward")(dy, ctx), dx_ref, op, dtype, "dx")
