"""The verification grid: named problems, seeded inputs, tolerances and cached reference answers.

Inputs are exact where exactness is free (benchdnn's trick): float32 cases use small integers,
so every product and partial sum of a convolution or a max pool is an integer far below 2**24
and float32 must match the float64 reference to the last bit. float64 cases use normal samples
and a tolerance. Average pooling divides by the window size, so it always gets a tolerance.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

import kernels

DTYPES = (np.float32, np.float64)

# A backend whose conv2d has variants (numba's two layouts, scipy's two methods) picks one per
# problem; "name:variant" forces one for every call, so that each is verified on the whole grid.
CONV_BACKENDS = [*kernels.names(), *(f"{name}:{variant}" for name, why in kernels.available().items() if why is None
                                     for variant in getattr(kernels.get(name), "VARIANTS", ()))]


def conv_backend(name, monkeypatch):
    """The backend module a CONV_BACKENDS name stands for, its variant set for the test."""
    backend, _, variant = name.partition(":")
    be = kernels.get(backend)
    if variant:
        monkeypatch.setattr(be, "VARIANT", variant)
    return be


def rig_auto(monkeypatch, picks: dict[str, str]) -> list:
    """auto's tuning rigged: im2col and numba its only candidates, each called once, and the pick
    ``picks["forward+backward"]`` where the calls ran a backward pass, else ``picks["forward"]``.
    Returns the list that grows by one per backward pass of a candidate."""
    from kernels import auto

    backwards: list = []
    for name in ("im2col", "numba"):
        be = kernels.get(name)
        monkeypatch.setattr(be, "conv2d_backward", functools.partial(counted, be.conv2d_backward, backwards))

    def tune(calls, **_):
        before = len(backwards)
        for call in calls.values():
            call()
        pick = picks["forward+backward" if len(backwards) > before else "forward"]
        return {"seconds": {n: 1e-3 if n == pick else 2e-3 for n in calls}, "turns": 1, "samples": {}}

    monkeypatch.setattr(auto, "candidates", lambda p: ["im2col", "numba"])
    monkeypatch.setattr(auto, "tune", tune)
    return backwards


def counted(function, calls: list, *args, **kwargs):
    calls.append(1)
    return function(*args, **kwargs)


def exact(backend: str) -> bool:
    """Whether float32 conv2d must match exactly: direct sums do, FFTs (kernels.traits) need not."""
    name, _, variant = backend.partition(":")
    return variant != "fft" and (variant == "direct" or kernels.traits(name).exact)

# Relative tolerances, stated once. None means exact.
TOLERANCE = {
    ("conv2d", np.float32): None,
    ("maxpool2d", np.float32): None,
    ("avgpool2d", np.float32): 1e-5,
    ("conv2d", np.float64): 1e-10,
    ("maxpool2d", np.float64): 1e-10,
    ("avgpool2d", np.float64): 1e-10,
}
INEXACT_FLOAT32 = 1e-5  # float32 conv2d of a backend whose sums are not direct (kernels.traits)


def _hw(pair) -> str:
    if isinstance(pair, tuple) and len(pair) == 4:  # (top, bottom, left, right) padding
        return "_".join(map(str, pair))
    h, w = pair if isinstance(pair, tuple) else (pair, pair)
    return f"{h}" if h == w else f"{h}x{w}"


@dataclass(frozen=True)
class ConvCase:
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    op: str = field(default="conv2d", init=False)

    @property
    def id(self) -> str:
        return (
            f"N{self.N}-C{self.C}-H{_hw((self.H, self.W))}-K{self.K}-R{_hw((self.R, self.S))}"
            f"-s{_hw(self.stride)}-p{_hw(self.padding)}-d{_hw(self.dilation)}-g{self.groups}"
            + ("" if self.bias else "-nobias")
        )

    @property
    def params(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


@dataclass(frozen=True)
class PoolCase:
    N: int
    C: int
    H: int
    W: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] | tuple[int, int, int, int] = 0

    @property
    def id(self) -> str:
        stride = "k" if self.stride is None else _hw(self.stride)
        return f"N{self.N}-C{self.C}-H{_hw((self.H, self.W))}-k{_hw(self.kernel_size)}-s{stride}-p{_hw(self.padding)}"

    @property
    def params(self) -> dict:
        return dict(stride=self.stride, padding=self.padding)


CONV_CASES = [
    ConvCase(4, 1, 28, 28, 3, 5, 5),  # seed 002's conv layer
    ConvCase(1, 1, 28, 28, 1, 3, 3, padding=1, bias=False),  # seed 000: one filter, same padding
    ConvCase(1, 1, 12, 17, 2, 3, 3),  # seed 003's shape, a non-square grey image, smaller
    ConvCase(2, 3, 7, 7, 4, 3, 3),
    ConvCase(2, 3, 8, 8, 4, 3, 3, stride=2, padding=1),
    ConvCase(2, 2, 10, 11, 3, 3, 3, stride=3, padding=2),  # the stride divides neither size
    ConvCase(2, 3, 9, 9, 2, 3, 3, padding=2, dilation=2),
    ConvCase(1, 2, 11, 10, 3, 3, 3, stride=2, padding=1, dilation=2),
    ConvCase(2, 3, 6, 9, 2, 2, 4, stride=(1, 2), padding=(1, 0), dilation=(1, 2)),
    ConvCase(2, 2, 9, 7, 3, 3, 2, stride=(3, 1), padding=(2, 0), bias=False),
    ConvCase(2, 4, 5, 5, 6, 1, 1),  # 1x1 kernel
    ConvCase(2, 4, 6, 5, 3, 1, 1, stride=2),  # 1x1 kernel that skips pixels
    ConvCase(2, 2, 5, 5, 3, 7, 7, padding=1),  # kernel as large as the padded image
    ConvCase(1, 3, 4, 6, 2, 4, 6),  # kernel as large as the image
    ConvCase(2, 1, 3, 3, 2, 3, 3, padding=2, dilation=2),  # dilated kernel as large as the padded image
    ConvCase(1, 1, 5, 5, 1, 3, 3),  # batch 1, one channel
    ConvCase(1, 1, 4, 4, 1, 3, 3, padding=2),  # padding wider than half the kernel
    ConvCase(2, 2, 8, 8, 2, 2, 2, stride=3, bias=False),  # stride > kernel: some pixels unused
    ConvCase(2, 4, 6, 6, 6, 3, 3, padding=1, groups=2),
    ConvCase(2, 6, 9, 9, 4, 3, 3, stride=2, padding=2, dilation=2, groups=2),
    ConvCase(2, 4, 7, 7, 4, 3, 3, padding=1, groups=4),  # depthwise
    ConvCase(2, 3, 8, 8, 3, 3, 3, stride=2, padding=1, groups=3),  # depthwise, stride 2
    ConvCase(1, 3, 6, 7, 6, 3, 2, padding=1, groups=3),  # depthwise, channel multiplier 2
    ConvCase(2, 8, 8, 8, 8, 3, 3, padding=1),  # a small ResNet-style layer
    ConvCase(2, 6, 9, 10, 20, 3, 3, stride=2, padding=1, groups=2),  # channels enough for numba's tiles
    # (top, bottom, left, right): TensorFlow's "SAME" at stride 2 pads more at the end
    ConvCase(2, 3, 8, 9, 4, 3, 3, stride=2, padding=(0, 1, 1, 1)),
    ConvCase(1, 2, 7, 6, 3, 3, 3, padding=(2, 0, 0, 1), dilation=2, bias=False),
    ConvCase(2, 6, 9, 10, 20, 3, 3, stride=2, padding=(1, 0, 0, 2), groups=2),  # numba's tiles
    ConvCase(1, 4, 3, 3, 8, 1, 1, padding=(0, 2, 0, 1)),  # outputs that read only the bottom padding
    ConvCase(1, 3, 5, 6, 3, 3, 3, stride=(2, 1), padding=(1, 2, 2, 0), groups=3),  # depthwise
    # a first layer (RGB, 7x7 / 2, like ResNet's): numba's dx lane by lane, its dw by taps
    ConvCase(1, 3, 11, 12, 32, 7, 7, stride=2, padding=(3, 2, 3, 1)),
    ConvCase(1, 2, 9, 10, 32, 3, 3, padding=1, dilation=2, bias=False),  # the same, unstrided and dilated
    # channels past a vector: numba's blocks of 16 (one partial), its dw along input channels
    ConvCase(2, 20, 7, 9, 18, 3, 3, stride=2, padding=1),
    ConvCase(2, 17, 7, 6, 16, 1, 1, stride=2, bias=False),  # a strided 1x1 layer: numba packs what it reads
    ConvCase(2, 6, 14, 14, 16, 5, 5),  # LeNet-5's conv2: numba's dx lane by lane, over 16 channels
    # one channel, 16 filters of 5x5: numba's dw by taps, the second tile of a row's 5 taps half a tile
    ConvCase(2, 1, 11, 13, 16, 5, 5, padding=2),
]

POOL_CASES = [
    PoolCase(4, 3, 24, 24, 3, stride=2),  # seed 002: overlapping 3x3 / 2
    PoolCase(2, 2, 26, 30, 2),  # seed 003: 2x2 / 2 after a conv
    PoolCase(2, 3, 7, 9, 3, stride=2),  # the stride divides neither size
    PoolCase(2, 2, 6, 6, 3, stride=1, padding=1),
    PoolCase(2, 2, 5, 6, 2, stride=1),
    PoolCase(2, 3, 7, 8, (2, 3), stride=(1, 2), padding=(1, 1)),
    PoolCase(2, 2, 5, 5, 5),  # window as large as the image
    PoolCase(1, 2, 4, 4, 3, stride=2, padding=1),  # window as large as the padded image
    PoolCase(2, 2, 5, 6, 1, stride=2),  # 1x1 window
    PoolCase(2, 2, 8, 8, 2, stride=3),  # stride > window: some pixels unused
    PoolCase(1, 1, 5, 5, 2),  # batch 1, 2x2 / 2 on an odd size
    PoolCase(2, 2, 9, 9, 4, stride=3, padding=2),
    PoolCase(2, 2, 10, 10, 3, stride=(2, 1), padding=(0, 1)),
    PoolCase(2, 2, 7, 8, 3, stride=2, padding=(0, 1, 1, 0)),  # (top, bottom, left, right)
    PoolCase(1, 2, 5, 6, (2, 3), stride=(1, 2), padding=(1, 0, 0, 1)),
]


def _seed(*parts) -> int:
    """A stable seed from readable parts (str hashes change per process)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def _read_only(*arrays):
    for a in arrays:
        if a is not None:
            a.flags.writeable = False  # a backend that writes into its inputs fails loudly
    return arrays


def random_array(rng, shape, dtype, values: tuple[int, int] = (-3, 3)):
    """Small integers as float32 (exact arithmetic), normal samples as float64."""
    if np.dtype(dtype) == np.float32:
        return rng.integers(values[0], values[1] + 1, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@functools.lru_cache(maxsize=None)
def conv_inputs(case: ConvCase, dtype) -> tuple:
    """(x, w, b, dy), seeded by the case, read-only."""
    rng = np.random.default_rng(_seed(case.id, np.dtype(dtype).name))
    x = random_array(rng, (case.N, case.C, case.H, case.W), dtype)
    w = random_array(rng, (case.K, case.C // case.groups, case.R, case.S), dtype)
    b = random_array(rng, (case.K,), dtype) if case.bias else None
    y, _ = kernels.reference.conv2d_forward(x, w, b, **case.params)
    dy = random_array(rng, y.shape, dtype)
    return _read_only(x, w, b, dy)


@functools.lru_cache(maxsize=None)
def pool_inputs(case: PoolCase, op: str, dtype) -> tuple:
    """(x, dy), seeded by the case, read-only. float32 inputs in {0, 1, 2}: max-pool ties abound."""
    rng = np.random.default_rng(_seed(case.id, op, np.dtype(dtype).name))
    x = random_array(rng, (case.N, case.C, case.H, case.W), dtype, values=(0, 2))
    y, _ = getattr(kernels.reference, f"{op}_forward")(x, case.kernel_size, **case.params)
    dy = random_array(rng, y.shape, dtype)
    return _read_only(x, dy)


def _as64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


@functools.lru_cache(maxsize=None)
def conv_expected(case: ConvCase, dtype) -> tuple:
    """The reference's (y, dx, dw, db), computed in float64."""
    x, w, b, dy = _as64(*conv_inputs(case, dtype))
    y, ctx = kernels.reference.conv2d_forward(x, w, b, **case.params)
    return (y, *kernels.reference.conv2d_backward(dy, ctx))


@functools.lru_cache(maxsize=None)
def pool_expected(case: PoolCase, op: str, dtype) -> tuple:
    """The reference's (y, dx), computed in float64."""
    x, dy = _as64(*pool_inputs(case, op, dtype))
    y, ctx = getattr(kernels.reference, f"{op}_forward")(x, case.kernel_size, **case.params)
    return y, getattr(kernels.reference, f"{op}_backward")(dy, ctx)


def assert_matches(actual, expected, op: str, dtype, what: str, exact: bool = True) -> None:
    """Compare a backend's output with the float64 reference at the tolerance for (op, dtype);
    ``exact=False`` (kernels.traits: a backend that may take FFTs) allows float32 conv2d 1e-5 of
    the largest output instead of exactness (INTERFACE.md allows about 1e-4)."""
    if expected is None:
        assert actual is None, f"{what}: expected None, got an array"
        return
    assert isinstance(actual, np.ndarray), f"{what}: expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    rtol = TOLERANCE[(op, np.dtype(dtype).type)]
    if rtol is None and not exact:
        rtol = INEXACT_FLOAT32
    if rtol is None:
        np.testing.assert_array_equal(actual, expected, err_msg=f"{what} (exact)")
    else:
        scale = max(1.0, float(np.max(np.abs(expected))))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)
