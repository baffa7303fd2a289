"""Argument validation shared by every backend: one place, so every backend raises the same errors.

Each ``check_*`` function either returns a frozen description of a valid problem or raises
``ShapeError`` (a bad shape or parameter) or ``TypeError`` (a bad dtype or argument type), with a
message that names the argument, what was expected and what was given. Backends call these before
touching data, so no input reaches compiled code unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ShapeError(ValueError):
    """A shape or parameter that breaks the kernel interface's rules."""


@dataclass(frozen=True)
class ConvProblem:
    """A validated conv2d call: sizes, parameters as (h, w) pairs (the padding as (top, bottom,
    left, right)), dtype and output size."""

    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dilation: tuple[int, int]
    groups: int
    dtype: np.dtype
    has_bias: bool
    out_h: int
    out_w: int

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.out_h, self.out_w)


@dataclass(frozen=True)
class PoolProblem:
    """A validated pooling call: sizes, parameters as (h, w) pairs (the padding as (top, bottom,
    left, right)), dtype and output size."""

    N: int
    C: int
    H: int
    W: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    dtype: np.dtype
    out_h: int
    out_w: int

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.out_h, self.out_w)


@dataclass(eq=False, slots=True)  # not frozen: a frozen dataclass takes 2 µs to make, a call of 10 µs here
class Context:
    """What a forward pass hands to its backward pass. Opaque to callers.

    ``saved`` holds the backend's own arrays (im2col's column matrix, max-pool's argmax...) and,
    where a backend has several algorithms, which one ran.
    """

    backend: str
    op: str
    problem: Any
    saved: dict

    def __repr__(self) -> str:  # the saved arrays can be large; show what matters
        return f"Context(backend={self.backend!r}, op={self.op!r}, problem={self.problem})"


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


LARGEST = 2**31 - 1  # a stride, padding, dilation or window beyond this is refused: compiled code
# indexes with it, and no array this library handles is that large


def pair(value: object, arg: str, minimum: int) -> tuple[int, int]:
    """Return ``value`` (an int or an (h, w) pair of ints) as a pair, each at least ``minimum``
    and at most ``LARGEST``."""
    if _is_int(value):
        result = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        result = (int(value[0]), int(value[1]))
    else:
        raise ShapeError(f"{arg} must be an int or an (h, w) pair of ints; got {value!r}")
    if min(result) < minimum:
        raise ShapeError(f"{arg} must be >= {minimum}; got {value!r}")
    if max(result) > LARGEST:
        raise ShapeError(f"{arg} must be at most 2**31 - 1; got {value!r}")
    return result


def sides(value: object, arg: str = "padding") -> tuple[int, int, int, int]:
    """Return ``value`` (an int, an (h, w) pair or a (top, bottom, left, right) 4-tuple of ints)
    as (top, bottom, left, right), each at least 0 and at most ``LARGEST``."""
    if isinstance(value, (tuple, list)) and len(value) == 4 and all(map(_is_int, value)):
        result = tuple(int(v) for v in value)
        if min(result) < 0:
            raise ShapeError(f"{arg} must be >= 0; got {value!r}")
        if max(result) > LARGEST:
            raise ShapeError(f"{arg} must be at most 2**31 - 1; got {value!r}")
        return result
    if not (_is_int(value) or isinstance(value, (tuple, list)) and len(value) == 2):
        raise ShapeError(f"{arg} must be an int, an (h, w) pair or a (top, bottom, left, right) 4-tuple of ints; "
                         f"got {value!r}")
    h, w = pair(value, arg, 0)
    return (h, h, w, w)


def padded_size(p) -> tuple[int, int]:
    """The height and width of problem ``p``'s padded input."""
    top, bottom, left, right = p.padding
    return p.H + top + bottom, p.W + left + right


def _array(value: object, arg: str, ndim: int, layout: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{arg} must be a numpy.ndarray; got {type(value).__name__}")
    if value.ndim != ndim:
        raise ShapeError(f"{arg} must be {ndim}-D {layout}; got shape {value.shape}")
    if value.size == 0:
        raise ShapeError(f"{arg} must not have a zero-sized dimension; got shape {value.shape}")
    return value


def _common_dtype(**arrays: np.ndarray | None) -> np.dtype:
    got = {arg: a.dtype for arg, a in arrays.items() if a is not None}
    dtypes = set(got.values())
    if len(dtypes) == 1 and dtypes <= set(FLOAT_DTYPES):
        return dtypes.pop()
    names = list(got)
    subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb = "must be" if len(names) == 1 else "must share one dtype,"
    listing = ", ".join(f"{arg}={dtype}" for arg, dtype in got.items())
    raise TypeError(f"{subject} {verb} float32 or float64; got {listing}")


def output_size(size: int, pad, kernel: int, dilation: int = 1, stride: int = 1) -> int:
    """One spatial dimension of a conv's or pool's output: floor rounding, zero padding ``pad`` on
    both sides or ``pad = (before, after)`` (``Ho = (H + top + bottom - dh*(R-1) - 1) // sh + 1``);
    below 1 when the kernel does not fit."""
    before, after = (pad, pad) if _is_int(pad) else pad
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def check_conv2d(x, w, b, stride, padding, dilation, groups) -> ConvProblem:
    """Validate a ``conv2d_forward`` call and return its problem description."""
    x = _array(x, "x", 4, "(N, C, H, W)")
    w = _array(w, "w", 4, "(K, C // groups, R, S)")
    if b is not None:
        b = _array(b, "b", 1, "(K,)")
    dtype = _common_dtype(x=x, w=w, b=b)
    stride = pair(stride, "stride", 1)
    padding = sides(padding)
    dilation = pair(dilation, "dilation", 1)
    if not _is_int(groups) or not 1 <= groups <= LARGEST:
        raise ShapeError(f"groups must be an int >= 1; got {groups!r}")
    groups = int(groups)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if C % groups:
        raise ShapeError(f"groups={groups} must divide the input channels of x, C={C}")
    if K % groups:
        raise ShapeError(f"groups={groups} must divide the output channels of w, K={K}")
    if Cg != C // groups:
        raise ShapeError(
            f"w must have C // groups = {C // groups} input channels, shape "
            f"({K}, {C // groups}, R, S); got shape {w.shape}"
        )
    if b is not None and b.shape != (K,):
        raise ShapeError(f"b must have shape (K,) = ({K},); got shape {b.shape}")
    out_h = output_size(H, padding[:2], R, dilation[0], stride[0])
    out_w = output_size(W, padding[2:], S, dilation[1], stride[1])
    if out_h < 1 or out_w < 1:
        raise ShapeError(
            f"w's dilated kernel ({dilation[0] * (R - 1) + 1}, {dilation[1] * (S - 1) + 1}) is "
            f"larger than the padded input x ({H + padding[0] + padding[1]}, {W + padding[2] + padding[3]})"
        )
    return ConvProblem(
        N, C, H, W, K, R, S, stride, padding, dilation, groups, dtype, b is not None, out_h, out_w
    )


def check_pool2d(x, kernel_size, stride, padding) -> PoolProblem:
    """Validate a ``maxpool2d_forward`` or ``avgpool2d_forward`` call."""
    x = _array(x, "x", 4, "(N, C, H, W)")
    dtype = _common_dtype(x=x)
    kernel_size = pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else pair(stride, "stride", 1)
    given, padding = padding, sides(padding)
    if max(padding[:2]) > kernel_size[0] // 2 or max(padding[2:]) > kernel_size[1] // 2:
        raise ShapeError(
            f"padding must be at most half of kernel_size {kernel_size} on each side; got padding {given!r}"
        )
    N, C, H, W = x.shape
    out_h = output_size(H, padding[:2], kernel_size[0], 1, stride[0])
    out_w = output_size(W, padding[2:], kernel_size[1], 1, stride[1])
    if out_h < 1 or out_w < 1:
        raise ShapeError(
            f"kernel_size {kernel_size} is larger than the padded input x "
            f"({H + padding[0] + padding[1]}, {W + padding[2] + padding[3]})"
        )
    return PoolProblem(N, C, H, W, kernel_size, stride, padding, dtype, out_h, out_w)


def check_backward(dy, ctx, backend: str, op: str, need_dx: bool = True):
    """Validate ``dy``, ``ctx`` (and a conv's ``need_dx``) of a backward call; return the forward
    pass's problem."""
    if not isinstance(need_dx, (bool, np.bool_)):
        raise ShapeError(f"need_dx must be True or False; got {need_dx!r}")
    if not isinstance(ctx, Context) or ctx.backend != backend or ctx.op != op:
        made_by = f"{ctx.backend}.{ctx.op}" if isinstance(ctx, Context) else type(ctx).__name__
        raise TypeError(
            f"ctx must come from {backend}.{op}_forward; got one from {made_by}"
        )
    problem = ctx.problem
    dy = _array(dy, "dy", 4, "like the forward output")
    if dy.dtype != problem.dtype:
        raise TypeError(f"dy must have the forward pass's dtype {problem.dtype}; got dy={dy.dtype}")
    if dy.shape != problem.y_shape:
        raise ShapeError(f"dy must have the forward output's shape {problem.y_shape}; got {dy.shape}")
    return problem
