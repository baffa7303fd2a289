"""The interface's rules, for every backend: malformed calls raise the documented exception with a
message naming the argument; inputs are never modified; outputs are fresh; layout does not matter;
NaN and Inf propagate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import kernels
from kernels import ShapeError

backends = pytest.mark.parametrize("backend", kernels.names())

f32, f64 = np.float32, np.float64


def arr(*shape, dtype=f64):
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape) % 5 - 2


@dataclass(frozen=True)
class BadCall:
    id: str
    call: Callable  # call(backend) makes the malformed call
    error: type
    names: str  # regex the message must match: the argument and what was given


def conv(x=None, w=None, b=None, **kw):
    x = arr(2, 4, 6, 6) if x is None else x
    w = arr(6, 4, 3, 3) if w is None else w
    return lambda be: be.conv2d_forward(x, w, b, **kw)


def conv_bwd(dy, **kw):
    def call(be):
        _, ctx = be.conv2d_forward(arr(2, 4, 6, 6), arr(6, 4, 3, 3), arr(6))
        return be.conv2d_backward(dy, ctx, **kw)
    return call


def pool(op, x=None, kernel_size=2, **kw):
    x = arr(2, 3, 6, 6) if x is None else x
    return lambda be: getattr(be, f"{op}_forward")(x, kernel_size, **kw)


def pool_bwd(op, dy):
    def call(be):
        _, ctx = getattr(be, f"{op}_forward")(arr(2, 3, 6, 6), 2)
        return getattr(be, f"{op}_backward")(dy, ctx)
    return call


BAD_CALLS = [
    BadCall("conv-x-3d", conv(x=arr(4, 6, 6)), ShapeError, r"x must be 4-D.*\(4, 6, 6\)"),
    BadCall("conv-w-3d", conv(w=arr(6, 3, 3)), ShapeError, r"w must be 4-D.*\(6, 3, 3\)"),
    BadCall("conv-x-not-array", conv(x=[[[[1.0]]]]), TypeError, r"x must be a numpy.ndarray.*list"),
    BadCall("conv-x-empty", conv(x=arr(0, 4, 6, 6)), ShapeError, r"x .*zero-sized.*\(0, 4, 6, 6\)"),
    BadCall("conv-channel-mismatch", conv(w=arr(6, 3, 3, 3)), ShapeError, r"w must have C // groups = 4.*\(6, 3, 3, 3\)"),
    BadCall("conv-groups-channel-mismatch", conv(w=arr(6, 4, 3, 3), groups=2), ShapeError, r"w must have C // groups = 2"),
    BadCall("conv-groups-not-dividing-C", conv(w=arr(6, 1, 3, 3), groups=3), ShapeError, r"groups=3 .*C=4"),
    BadCall("conv-groups-not-dividing-K", conv(w=arr(5, 2, 3, 3), groups=2), ShapeError, r"groups=2 .*K=5"),
    BadCall("conv-groups-zero", conv(groups=0), ShapeError, r"groups must be an int >= 1; got 0"),
    BadCall("conv-kernel-larger-than-padded-input", conv(w=arr(6, 4, 9, 3), padding=1), ShapeError, r"w's dilated kernel \(9, 3\).*x \(8, 8\)"),
    BadCall("conv-dilated-kernel-too-large", conv(dilation=3), ShapeError, r"w's dilated kernel \(7, 7\).*x \(6, 6\)"),
    BadCall("conv-stride-zero", conv(stride=0), ShapeError, r"stride must be >= 1; got 0"),
    BadCall("conv-stride-pair-zero", conv(stride=(1, 0)), ShapeError, r"stride must be >= 1; got \(1, 0\)"),
    BadCall("conv-stride-float", conv(stride=1.5), ShapeError, r"stride must be an int .*1\.5"),
    BadCall("conv-stride-triple", conv(stride=(1, 1, 1)), ShapeError, r"stride must be an int or an \(h, w\) pair.*\(1, 1, 1\)"),
    BadCall("conv-dilation-zero", conv(dilation=0), ShapeError, r"dilation must be >= 1; got 0"),
    BadCall("conv-padding-negative", conv(padding=-1), ShapeError, r"padding must be >= 0; got -1"),
    BadCall("conv-stride-huge", conv(stride=2**62), ShapeError, r"stride must be at most 2\*\*31 - 1; got 4611686018427387904"),
    BadCall("conv-stride-huge-pair", conv(stride=(1, 2**40)), ShapeError, r"stride must be at most 2\*\*31 - 1"),
    BadCall("conv-dilation-huge", conv(dilation=2**62), ShapeError, r"dilation must be at most 2\*\*31 - 1"),
    BadCall("conv-padding-huge", conv(padding=2**62), ShapeError, r"padding must be at most 2\*\*31 - 1"),
    BadCall("conv-padding-triple", conv(padding=(1, 1, 1)), ShapeError,
            r"padding must be an int, an \(h, w\) pair or a \(top, bottom, left, right\) 4-tuple of ints; got \(1, 1, 1\)"),
    BadCall("conv-padding-sides-negative", conv(padding=(0, 1, -1, 0)), ShapeError, r"padding must be >= 0; got \(0, 1, -1, 0\)"),
    BadCall("conv-padding-sides-huge", conv(padding=(0, 2**40, 0, 0)), ShapeError, r"padding must be at most 2\*\*31 - 1"),
    BadCall("conv-padding-sides-float", conv(padding=(0, 1.0, 0, 0)), ShapeError, r"padding must be an int, an \(h, w\) pair or"),
    BadCall("conv-kernel-larger-than-padded-sides", conv(w=arr(6, 4, 9, 3), padding=(1, 1, 0, 0)), ShapeError,
            r"w's dilated kernel \(9, 3\).*x \(8, 6\)"),
    BadCall("conv-groups-huge", conv(groups=2**62), ShapeError, r"groups must be an int >= 1"),
    BadCall("conv-bias-length", conv(b=arr(5)), ShapeError, r"b must have shape \(K,\) = \(6,\); got shape \(5,\)"),
    BadCall("conv-bias-2d", conv(b=arr(6, 1)), ShapeError, r"b must be 1-D"),
    BadCall("conv-int-dtype", conv(x=arr(2, 4, 6, 6).astype(np.int64), w=arr(6, 4, 3, 3).astype(np.int64)), TypeError, r"x and w must share one dtype.*int64"),
    BadCall("conv-float16", conv(x=arr(2, 4, 6, 6, dtype=np.float16), w=arr(6, 4, 3, 3, dtype=np.float16)), TypeError, r"float16"),
    BadCall("conv-mixed-dtypes", conv(x=arr(2, 4, 6, 6, dtype=f32)), TypeError, r"x=float32, w=float64"),
    BadCall("conv-bias-dtype", conv(b=arr(6, dtype=f32)), TypeError, r"x, w and b must share one dtype.*b=float32"),
    BadCall("conv-dy-shape", conv_bwd(arr(2, 6, 3, 4)), ShapeError, r"dy must have the forward output's shape \(2, 6, 4, 4\); got \(2, 6, 3, 4\)"),
    BadCall("conv-dy-dtype", conv_bwd(arr(2, 6, 4, 4, dtype=f32)), TypeError, r"dy must have the forward pass's dtype float64; got dy=float32"),
    BadCall("conv-need-dx-string", conv_bwd(arr(2, 6, 4, 4), need_dx="no"), ShapeError, r"need_dx must be True or False; got 'no'"),
    BadCall("conv-need-dx-int", conv_bwd(arr(2, 6, 4, 4), need_dx=0), ShapeError, r"need_dx must be True or False; got 0"),
    BadCall("conv-ctx-wrong", lambda be: be.conv2d_backward(arr(2, 6, 4, 4), {"cols": 1}), TypeError, r"ctx must come from \w+\.conv2d_forward"),
]
for op in ("maxpool2d", "avgpool2d"):
    BAD_CALLS += [
        BadCall(f"{op}-x-3d", pool(op, x=arr(3, 6, 6)), ShapeError, r"x must be 4-D.*\(3, 6, 6\)"),
        BadCall(f"{op}-kernel-zero", pool(op, kernel_size=0), ShapeError, r"kernel_size must be >= 1; got 0"),
        BadCall(f"{op}-stride-zero", pool(op, stride=0), ShapeError, r"stride must be >= 1; got 0"),
        BadCall(f"{op}-stride-huge", pool(op, stride=2**62), ShapeError, r"stride must be at most 2\*\*31 - 1"),
        BadCall(f"{op}-kernel-huge", pool(op, kernel_size=2**62), ShapeError, r"kernel_size must be at most 2\*\*31 - 1"),
        BadCall(f"{op}-padding-negative", pool(op, padding=-1), ShapeError, r"padding must be >= 0; got -1"),
        BadCall(f"{op}-padding-over-half", pool(op, kernel_size=3, padding=2), ShapeError, r"padding must be at most half of kernel_size \(3, 3\) on each side; got padding 2"),
        BadCall(f"{op}-one-side-over-half", pool(op, kernel_size=3, padding=(0, 0, 0, 2)), ShapeError,
                r"padding must be at most half of kernel_size \(3, 3\) on each side; got padding \(0, 0, 0, 2\)"),
        BadCall(f"{op}-kernel-larger-than-padded-input", pool(op, kernel_size=(9, 2)), ShapeError, r"kernel_size \(9, 2\) is larger than the padded input x \(6, 6\)"),
        BadCall(f"{op}-int-dtype", pool(op, x=arr(2, 3, 6, 6).astype(np.int32)), TypeError, r"x must be float32 or float64; got x=int32"),
        BadCall(f"{op}-dy-shape", pool_bwd(op, arr(2, 3, 3, 2)), ShapeError, r"dy must have the forward output's shape \(2, 3, 3, 3\); got \(2, 3, 3, 2\)"),
        BadCall(f"{op}-dy-dtype", pool_bwd(op, arr(2, 3, 3, 3, dtype=f32)), TypeError, r"dy must have the forward pass's dtype float64"),
    ]


@pytest.mark.parametrize("bad", BAD_CALLS, ids=lambda c: c.id)
@backends
def test_malformed_call_raises_a_clear_error(backend, bad, capsys):
    with pytest.raises(bad.error, match=bad.names):
        bad.call(kernels.get(backend))
    assert capsys.readouterr() == ("", ""), "library code must not print"


@backends
def test_ctx_from_another_backend_is_refused(backend):
    other = "reference"
    _, ctx = getattr(kernels, other).conv2d_forward(arr(1, 1, 4, 4), arr(1, 1, 2, 2))
    with pytest.raises(TypeError, match=rf"ctx must come from {backend}\.conv2d_forward; got one from {other}\.conv2d"):
        kernels.get(backend).conv2d_backward(arr(1, 1, 3, 3), ctx)


def every_call(be, x, w, b, dy_conv, dy_pool):
    """Run all six functions; return every output array."""
    y, ctx = be.conv2d_forward(x, w, b, stride=2, padding=1, dilation=1, groups=2)
    outs = [y, *be.conv2d_backward(dy_conv, ctx)]
    for op in ("maxpool2d", "avgpool2d"):
        y, ctx = getattr(be, f"{op}_forward")(x, 3, stride=2, padding=1)
        outs += [y, getattr(be, f"{op}_backward")(dy_pool, ctx)]
    return outs


def inputs(rng, dtype=f64):
    """x, w, b, dy for conv, dy for pooling. Integer-valued, so sums are exact in any order."""
    shapes = [(2, 4, 7, 7), (6, 2, 3, 3), (6,), (2, 6, 4, 4), (2, 4, 4, 4)]
    return [rng.integers(-4, 5, size=shape).astype(dtype) for shape in shapes]


@backends
def test_inputs_are_never_modified(backend):
    args = inputs(np.random.default_rng(0))
    copies = [a.copy() for a in args]
    every_call(kernels.get(backend), *args)
    for a, before in zip(args, copies):
        np.testing.assert_array_equal(a, before)


@backends
def test_outputs_are_fresh_arrays(backend):
    be = kernels.get(backend)
    rng = np.random.default_rng(1)
    args = inputs(rng)
    first = every_call(be, *args)
    kept = [a.copy() for a in first]
    every_call(be, *inputs(rng))  # a second call must not overwrite the first call's outputs
    for out, before in zip(first, kept):
        np.testing.assert_array_equal(out, before)
        assert not any(np.shares_memory(out, a) for a in args)
    for i, a in enumerate(first):
        assert not any(np.shares_memory(a, other) for other in first[i + 1 :])


@backends
def test_non_contiguous_inputs_give_the_same_answers(backend):
    be = kernels.get(backend)
    contiguous = inputs(np.random.default_rng(2))
    strided = []
    for a in contiguous:
        # every other element of a twice-as-large array, transposed there and back
        big = np.zeros(tuple(2 * n for n in a.shape[::-1]), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a.T
        strided.append(view.T)
        assert not strided[-1].flags.c_contiguous and not strided[-1].flags.f_contiguous
    for got, expected in zip(every_call(be, *strided), every_call(be, *contiguous)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("special", [np.nan, np.inf])
@backends
def test_nan_and_inf_propagate(backend, special):
    be = kernels.get(backend)
    x = np.ones((1, 1, 5, 5))
    x[0, 0, 2, 2] = special
    # Every 3x3 window of the 5x5 image holds the centre pixel, and so does every 2x2 window of
    # the 3x3 middle, so every output is special.
    y, _ = be.conv2d_forward(x, np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), special))
    for op in ("maxpool2d", "avgpool2d"):
        y, _ = getattr(be, f"{op}_forward")(x[:, :, 1:4, 1:4], 2, stride=1)
        np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), special), err_msg=op)


@backends
def test_maxpool_gradient_goes_to_the_first_nan_and_keeps_infinite_gradients(backend):
    """A NaN is a window's maximum (the first NaN in row-major order takes the gradient), and
    an infinite upstream gradient reaches only its window's maximum: no Inf * 0 = NaN elsewhere."""
    be, ref = kernels.get(backend), kernels.reference
    x = np.array([[[[1.0, np.nan, 2.0], [np.nan, 0.0, 3.0], [4.0, 5.0, -1.0]]]])
    dy = np.array([[[[1.0, np.inf], [10.0, 100.0]]]])
    _, ctx = be.maxpool2d_forward(x, 2, stride=1)
    _, ref_ctx = ref.maxpool2d_forward(x, 2, stride=1)
    expected = ref.maxpool2d_backward(dy, ref_ctx)
    np.testing.assert_array_equal(expected, [[[[0.0, 1.0 + np.inf, 0.0], [10.0, 0.0, 0.0], [0.0, 100.0, 0.0]]]])
    np.testing.assert_array_equal(be.maxpool2d_backward(dy, ctx), expected)
