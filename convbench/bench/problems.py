"""A benchmark problem: one conv or pooling layer, with its FLOP count and the calls that run it.

FLOP formulas (a multiply-add counts as two FLOPs; bias, the gradient of the bias and
pooling's one division per output are left out, as benchdnn and ConvBench do):

==========  ==========================================  =======================================
op          forward                                     backward (dx and dw together)
==========  ==========================================  =======================================
conv2d      2 * N * K * Ho * Wo * (C / groups) * R * S  2 * forward (dx and dw each cost one)
maxpool2d   N * C * Ho * Wo * R * S (comparisons)       N * C * Ho * Wo (one add per output)
avgpool2d   N * C * Ho * Wo * R * S (adds)              N * C * Ho * Wo * R * S (adds)
==========  ==========================================  =======================================

forward+backward is the sum. Arithmetic intensity divides the FLOPs by the fewest bytes a
direction must move: every array it reads or writes, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

import kernels

OPS = ("conv2d", "maxpool2d", "avgpool2d")
DIRECTIONS = ("forward", "backward", "forward+backward")


def _hw(value: tuple) -> str:
    """(h, w) as ``h`` or ``hxw``; a (top, bottom, left, right) padding as ``top/bottom`` for an
    axis whose two sides differ (``0/1x1``: top 0, bottom 1, left and right 1)."""
    if len(value) == 4:
        value = tuple(str(a) if a == b else f"{a}/{b}" for a, b in (value[:2], value[2:]))
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


@dataclass(frozen=True)
class Problem:
    """One layer. For pooling, K equals C, (R, S) is the window, dilation is 1 and groups 1."""

    name: str
    op: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, ...] = (0, 0)  # (h, w), or (top, bottom, left, right) where the sides differ
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    repeat: int = 1
    directions: tuple[str, ...] = ()  # the only directions to measure (a benchdnn --dir); () for any
    dtypes: tuple[str, ...] = ()  # the only dtypes to measure (a benchdnn --dt); () for any

    def __post_init__(self):
        top, bottom, left, right = self.sides
        if (top, left) == (bottom, right):  # one spelling for each padding
            object.__setattr__(self, "padding", (top, left))
        if self.op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}; got {self.op!r}")
        if self.op != "conv2d" and (self.K != self.C or self.dilation != (1, 1) or self.groups != 1):
            raise ValueError(f"{self.name}: a pooling problem has K == C, dilation 1 and groups 1")
        if self.C % self.groups or self.K % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide C={self.C} and K={self.K}")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"{self.name}: the kernel is larger than the padded input")

    @property
    def sides(self) -> tuple[int, int, int, int]:
        """The padding as (top, bottom, left, right)."""
        if len(self.padding) == 4:
            return tuple(self.padding)
        return (self.padding[0], self.padding[0], self.padding[1], self.padding[1])

    @property
    def out_h(self) -> int:
        return kernels.output_size(self.H, self.sides[:2], self.R, self.dilation[0], self.stride[0])

    @property
    def out_w(self) -> int:
        return kernels.output_size(self.W, self.sides[2:], self.S, self.dilation[1], self.stride[1])

    def worth_timing(self, backend: str) -> bool:
        """False where one call of ``backend`` is too slow to time repeatedly (its declared cost
        hint, ``kernels.traits``)."""
        return kernels.traits(backend).worth_timing(self.op, self.N, self.C, self.K, self.out_h, self.out_w,
                                                    self.groups, self.R * self.S)

    def wants(self, direction: str, dtype: str) -> bool:
        """Whether ``direction`` and ``dtype`` are among those this problem is measured in."""
        return (not self.directions or direction in self.directions) and (not self.dtypes or dtype in self.dtypes)

    def with_batch(self, N: int) -> Problem:
        return replace(self, N=N)

    def flops(self, direction: str = "forward") -> int:
        outputs = self.N * self.K * self.out_h * self.out_w
        window = self.R * self.S
        if self.op == "conv2d":
            forward = 2 * outputs * (self.C // self.groups) * window
            backward = 2 * forward
        elif self.op == "maxpool2d":
            forward, backward = outputs * window, outputs
        else:
            forward = backward = outputs * window
        return {"forward": forward, "backward": backward, "forward+backward": forward + backward}[direction]

    def bytes_moved(self, direction: str, itemsize: int) -> int:
        x = self.N * self.C * self.H * self.W
        y = self.N * self.K * self.out_h * self.out_w
        w = self.K * (self.C // self.groups) * self.R * self.S if self.op == "conv2d" else 0
        forward = x + w + y  # read x and w, write y
        backward = y + w + x + x + w  # read dy, w, x; write dx, dw
        return itemsize * {"forward": forward, "backward": backward, "forward+backward": forward + backward}[direction]

    def working_bytes(self, itemsize: int) -> int:
        """A lower bound on the memory one forward+backward call takes: the padded input, the
        output and its gradient, the filters, and an im2col column matrix (C/g*R*S x N*Ho*Wo,
        what the GEMM backends allocate). A problem over the machine's memory is refused before
        anything is allocated (``convbench.bench.runner``)."""
        top, bottom, left, right = self.sides
        padded = self.N * self.C * (self.H + top + bottom) * (self.W + left + right)
        y = self.N * self.K * self.out_h * self.out_w
        w = self.K * (self.C // self.groups) * self.R * self.S if self.op == "conv2d" else 0
        columns = (self.C // self.groups if self.op == "conv2d" else self.C) * self.R * self.S * self.N * self.out_h * self.out_w
        return itemsize * (2 * padded + 2 * y + 2 * w + columns)

    def descriptor(self) -> str:
        """The problem in oneDNN benchdnn's notation (dilation there counts from 0; the padding at
        the bottom and right follows from the output size there)."""
        text = f"mb{self.N}ic{self.C}ih{self.H}iw{self.W}"
        if self.op == "conv2d":
            text = (f"g{self.groups}" if self.groups > 1 else "") + text + f"oc{self.K}"
        text += f"oh{self.out_h}ow{self.out_w}kh{self.R}kw{self.S}sh{self.stride[0]}sw{self.stride[1]}"
        text += f"ph{self.sides[0]}pw{self.sides[2]}"
        if self.dilation != (1, 1):
            text += f"dh{self.dilation[0] - 1}dw{self.dilation[1] - 1}"
        return text + f'n"{self.name}"'

    def identity(self) -> str:
        """Everything that decides what is measured: the descriptor, and any directions or dtypes
        the problem is limited to."""
        sides = [f"--padding={','.join(map(str, self.padding))}"] if len(self.padding) == 4 else []
        return " ".join([self.descriptor(), *sides, *(f"--dir={d}" for d in self.directions),
                         *(f"--dt={d}" for d in self.dtypes)])

    def short(self) -> str:
        """A compact label for tables: N1 C64 56x56 K64 3x3 s2 p1."""
        label = f"N{self.N} C{self.C} {self.H}x{self.W}"
        label += f" K{self.K}" if self.op == "conv2d" else ""
        label += f" {self.R}x{self.S} s{_hw(self.stride)} p{_hw(self.padding)}"
        label += f" d{_hw(self.dilation)}" if self.dilation != (1, 1) else ""
        label += f" g{self.groups}" if self.groups > 1 else ""
        return label

    def record(self) -> dict:
        """Flat fields for a results row."""
        fields = asdict(self)
        del fields["directions"], fields["dtypes"]  # the row says which one it is
        for key in ("stride", "padding", "dilation"):
            fields[key] = _hw(fields[key])
        fields["problem"] = fields.pop("name")
        return fields

    def probe(self, outputs: int = 8) -> tuple[Problem, float]:
        """A cut-down problem for estimating the time of a slow backend, and the work ratio.

        The probe keeps the channels and the kernel and cuts the batch to 1 and the image so the
        output is at most ``outputs`` x ``outputs``: beyond a fixed cost per call, every backend
        here does work in proportion to the number of output pixels once the channels and the
        kernel are fixed. The ratio is the full problem's output pixels over the probe's.
        """
        if self.N == 1 and self.out_h <= outputs and self.out_w <= outputs:
            return self, 1.0
        ho, wo = min(self.out_h, outputs), min(self.out_w, outputs)
        small = replace(
            self,
            N=1,
            H=min(self.H, (ho - 1) * self.stride[0] + self.dilation[0] * (self.R - 1) + 1),
            W=min(self.W, (wo - 1) * self.stride[1] + self.dilation[1] * (self.S - 1) + 1),
            padding=(0, 0) if self.out_h > outputs or self.out_w > outputs else self.padding,
        )
        if small.out_h < 1 or small.out_w < 1:
            return self, 1.0
        return small, (self.N * self.out_h * self.out_w) / (small.N * small.out_h * small.out_w)

    def inputs(self, dtype, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded standard-normal arrays for every call of this problem."""
        rng = np.random.default_rng(seed)
        draw = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
        arrays = {"x": draw(self.N, self.C, self.H, self.W), "dy": draw(self.N, self.K, self.out_h, self.out_w)}
        if self.op == "conv2d":
            arrays["w"] = draw(self.K, self.C // self.groups, self.R, self.S)
            arrays["b"] = draw(self.K)
        return arrays

    def forward(self, backend, arrays):
        """Run the forward pass on ``backend``: returns (y, ctx)."""
        if self.op == "conv2d":
            return backend.conv2d_forward(
                arrays["x"], arrays["w"], arrays["b"],
                stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
            )
        return getattr(backend, f"{self.op}_forward")(
            arrays["x"], (self.R, self.S), stride=self.stride, padding=self.padding
        )

    def backward(self, backend, arrays, ctx):
        """Run the backward pass: returns a tuple of gradients (dx, dw, db) or (dx,)."""
        grads = getattr(backend, f"{self.op}_backward")(arrays["dy"], ctx)
        return grads if isinstance(grads, tuple) else (grads,)

