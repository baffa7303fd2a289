"""oneDNN benchdnn's convolution descriptor, read exactly as benchdnn reads it.

``mb32_g1ic3oc32_ih224oh112kh3sh2dh0ph1_iw224ow112kw3sw2dw0pw1_n"mobilenet:conv1*3"`` is parsed by
benchdnn's ``conv::str2desc`` (oneDNN tests/benchdnn/conv/conv_aux.cpp), completed by
``sanitize_desc`` (tests/benchdnn/common.cpp) and ``desc_t::init_pad_r`` (conv/conv.hpp). This
module follows those three functions rule for rule:

- Fields ``g mb ic id ih iw oc od oh ow kd kh kw sd sh sw pd ph pw dd dh dw``, each a name and a
  base-10 integer (``strtol``: an optional sign; a negative value fails), in any order; a field
  given twice keeps its last value. A single ``_`` may follow a field (two in a row fail). ``n``
  starts the name, which runs to the end (quotes and all, as benchdnn keeps them).
- Defaults: ``g`` 1 (and no groups axis in the weights unless given), ``mb`` 2, strides 1,
  padding and dilation 0. Dilation counts from 0: ``dh1`` is a dilation of 2.
- An axis is left out when none of its input, kernel, output and dilation is given, its stride
  is 1 and its padding is not above 0. An axis that is not left out needs its input and kernel
  size; a missing output is computed from the padding (0 when not given), a missing padding
  from the output, rounding towards zero as C's integer division does.
- The lowest axes given decide the dimensionality (width alone: 1-D, height: 2-D, depth: 3-D);
  a 2-D descriptor without a width copies the height's fields, a 3-D one without height and
  width copies the depth's, and a lower axis left out is 1 wide, with stride 1 and no padding.
- The padding at the far end of each axis (bottom, right) is what makes the output size come
  out: ``(o - 1) * s - i + (k - 1) * (d + 1) + 1 - p``. It may differ from the near end's, and
  may be negative (rows that no output reads).

Pooling descriptors (no ``oc``) are convbench's own use of the same grammar; see
``convbench.bench.suites.benchdnn``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from convbench.bench.errors import InputError, clip

FIELDS = ("g", "mb", "ic", "id", "ih", "iw", "oc", "od", "oh", "ow", "kd", "kh", "kw",
          "sd", "sh", "sw", "pd", "ph", "pw", "dd", "dh", "dw")
AXES = ("d", "h", "w")
_FIELD = re.compile(r"(%s)([+-]?\d*)" % "|".join(sorted(FIELDS, key=len, reverse=True)))
_LEFT_OUT = {"o": 1, "i": 1, "k": 1, "s": 1, "p": 0, "d": 0}  # sanitize_desc's values for an absent axis


class DescriptorError(InputError):
    """A descriptor benchdnn would refuse; the message says why, as benchdnn's does."""


@dataclass(frozen=True)
class Axis:
    """One spatial axis as benchdnn holds it: input, output and kernel size, stride, padding at
    the near and the far end, and dilation counted from 0."""

    i: int
    o: int
    k: int
    s: int
    p: int
    p_r: int
    d: int


@dataclass(frozen=True)
class Descriptor:
    """A convolution descriptor after benchdnn's derivations. ``name`` is the text after ``n``
    (quotes kept); ``ndims`` counts the batch and channel axes too (3: 1-D ... 5: 3-D)."""

    g: int
    has_groups: bool
    mb: int
    ic: int
    oc: int
    ndims: int
    depth: Axis
    height: Axis
    width: Axis
    name: str

    def desc_t(self) -> dict:
        """The fields as benchdnn's desc_t names them (``ih``, ``ph_r``, ...), to compare a reading
        with benchdnn's (tests/benchdnn_oracle.py, scripts/benchdnn_coverage.py)."""
        fields = {"g": self.g, "has_groups": self.has_groups, "mb": self.mb, "ic": self.ic, "oc": self.oc,
                  "ndims": self.ndims, "name": self.name}
        for a, axis in zip(AXES, (self.depth, self.height, self.width)):
            fields.update({"i" + a: axis.i, "o" + a: axis.o, "k" + a: axis.k, "s" + a: axis.s, "p" + a: axis.p,
                           "p" + a + "_r": axis.p_r, "d" + a: axis.d})
        return fields


def _c_div(a: int, b: int) -> int:
    """C's integer division, which rounds towards zero (Python's ``//`` rounds down)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _fields(text: str) -> tuple[dict[str, int], str]:
    """The fields of ``text`` (a repeated one keeps its last value) and the name ('' if none)."""
    values: dict[str, int] = {}
    position, after_field = 0, False
    while position < len(text):
        match = _FIELD.match(text, position)
        if match:
            key, number = match.groups()
            if not re.fullmatch(r"[+-]?\d+", number):
                raise DescriptorError(f"no value found for {key!r} in {clip(text, 80)!r}")
            values[key] = int(number)
            if values[key] < 0:
                raise DescriptorError(f"{key!r} must be positive in {clip(text, 80)!r}")
            position, after_field = match.end(), True
        elif text[position] == "n":
            return values, text[position + 1:]
        elif text[position] == "_" and after_field:
            position, after_field = position + 1, False
        else:
            raise DescriptorError(f"unrecognized pattern in {clip(text, 80)!r} starting from {clip(text[position:], 40)!r}")
    return values, ""


def _axis(values: dict[str, int], a: str, text: str) -> dict[str, int]:
    """One axis's fields completed as str2desc completes them (output 0: the axis is left out)."""
    axis = {f: values.get(f + a, 0) for f in "iokd"}
    axis["s"], axis["p"] = values.get("s" + a, 1), values.get("p" + a, -1)
    if not (axis["i"] | axis["k"] | axis["o"] | axis["d"]) and axis["s"] == 1 and axis["p"] < 1:
        return axis
    for f in "ik":
        if axis[f] <= 0:
            raise DescriptorError(f"{f + a!r} was not specified or set to 0 in {clip(text, 80)!r}")
    extent = (axis["k"] - 1) * (axis["d"] + 1) + 1
    if not axis["o"]:
        axis["p"] = max(axis["p"], 0)
        axis["o"] = _c_div(axis["i"] - extent + 2 * axis["p"], axis["s"]) + 1
        if axis["o"] <= 0:
            raise DescriptorError(f"'o{a}' was not specified and the other fields give {axis['o']} in {clip(text, 80)!r}")
    elif axis["p"] < 0:
        axis["p"] = _c_div((axis["o"] - 1) * axis["s"] - axis["i"] + extent, 2)
    return axis


def _dimensions(axes: dict[str, dict[str, int]], text: str) -> int:
    """sanitize_desc: the number of dimensions, with absent axes copied or filled in place."""
    d, h, w = (axes[a]["o"] == 0 for a in AXES)
    ndims = 5 - d - (d and h) - (d and h and w)
    if ndims <= 2:
        raise DescriptorError(f"the problem must have at least one spatial dimension in {clip(text, 80)!r}")
    if ndims == 5 and h != w:
        raise DescriptorError(f"the problem needs either both 'h' and 'w' axes or neither in {clip(text, 80)!r}")
    if ndims == 5 and h:
        axes["h"], axes["w"] = dict(axes["d"]), dict(axes["d"])
    elif ndims == 4 and w:
        axes["w"] = dict(axes["h"])
    for a, lowest in (("d", 5), ("h", 4), ("w", 3)):
        if ndims < lowest:
            axes[a] = dict(_LEFT_OUT)
    return ndims


def parse(text: str, pooling: bool = False) -> Descriptor:
    """``text`` as benchdnn's str2desc reads it; DescriptorError where benchdnn fails.
    ``pooling``: convbench's pooling descriptors, which have no ``oc``."""
    values, name = _fields(text)
    for key in ("g", "ic", "sd", "sh", "sw") + (() if pooling else ("oc",)):
        if values.get(key, 1 if key[0] in "gs" else 0) <= 0:
            raise DescriptorError(f"{key!r} was not specified or set to 0 in {clip(text, 80)!r}")
    axes = {a: _axis(values, a, text) for a in AXES}
    ndims = _dimensions(axes, text)
    done = {}
    for a, axis in axes.items():
        extent = (axis["k"] - 1) * (axis["d"] + 1) + 1
        done[a] = Axis(i=axis["i"], o=axis["o"], k=axis["k"], s=axis["s"], p=axis["p"], d=axis["d"],
                       p_r=(axis["o"] - 1) * axis["s"] - axis["i"] + extent - axis["p"])
    return Descriptor(g=values.get("g", 1), has_groups="g" in values, mb=values.get("mb", 2),
                      ic=values.get("ic", 0), oc=values.get("oc", 0), ndims=ndims,
                      depth=done["d"], height=done["h"], width=done["w"], name=name)
