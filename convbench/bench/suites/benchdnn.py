"""oneDNN benchdnn batch files, read as benchdnn runs them (tests/benchdnn/inputs/conv).

A file is a stream of words (benchdnn's ``batch()``): options (``--dir=BWD_D``) and descriptors
(``convbench.bench.suites.descriptor``), any number to a line; a word starting with ``#`` ends
its line, a word ending with ``\\`` joins the next. Options apply to every descriptor after them
until ``--reset``, across ``--batch=FILE`` (a file relative to the one that names it, read in
place, as benchdnn's settings carry through it):

- ``--mb=N,M``: one problem per batch size (0 keeps the descriptor's own);
- ``--dir=``: FWD_B, FWD_D, FWD_I measured as ``forward``; BWD_D, BWD_W, BWD_WB as ``backward``
  (which computes every gradient at once); a shape under several ``--dir`` blocks is one problem;
- ``--dt=`` / ``--cfg=``: f32 and f64 (``f32:f32:f32`` too: one type for src, weights and dst);
- ``--alg=``: direct and auto run; max and avg_p (or pooling_max, pooling_avg_include_padding)
  make a descriptor without ``oc`` a pooling problem (convbench's own use of the grammar);
- the repeat count of a name, ``n"resnet_50:res2a_branch2b*3"``, is the layer's ``repeat``.

What convbench cannot run is skipped and counted, one line each kind (``Reading.skipped``): 3-D
descriptors, other data types, attributes, ``--alg=wino``, a negative padding, sizes over
2**31 - 1, an empty batch, options it does not know; ``strict=True`` refuses the file at the
first instead. Settings of benchdnn's own harness and memory layouts change nothing convbench
measures (it measures NCHW): they are counted as ignored (``Reading.ignored``). A line benchdnn
itself refuses is refused, naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from convbench.bench.errors import clip
from convbench.bench.limits import MAX_SIZE
from convbench.bench.problems import Problem
from convbench.bench.suites.descriptor import Axis, Descriptor, DescriptorError, parse
from convbench.bench.suites.files import SuiteError, integer, read_text

MAX_DEPTH = 16  # --batch files within --batch files
DIRECTIONS = {"FWD_D": "forward", "FWD_B": "forward", "FWD_I": "forward",
              "BWD_D": "backward", "BWD_W": "backward", "BWD_WB": "backward"}
DTYPES = {"f32": "float32", "f64": "float64"}
POOLING = {"max": "maxpool2d", "pooling_max": "maxpool2d", "avg_p": "avgpool2d",
           "pooling_avg_include_padding": "avgpool2d"}
CONV_ALGORITHMS = ("direct", "auto", "convolution_direct", "convolution_auto")
# benchdnn's knobs that change how it runs a problem, not the problem; and the memory layouts
IGNORED = ("--mode", "--engine", "--skip-impl", "--impl", "--ctx-init", "--ctx-exe", "--allow-enum-tags-only",
           "--fast-ref", "--fast-ref-gpu", "--check-ref-impl", "--repeats-per-prb", "--max-ms-per-prb",
           "--fix-times-per-prb", "--perf-template", "--memory-kind", "--canonical", "--verbose", "-v",
           "--start", "--cold-cache", "--mode-modifier", "--bia-dt", "--stag", "--wtag", "--dtag", "--strides")
_NAME_REPEAT = re.compile(r"\*(\d+)$")


@dataclass
class Reading:
    """What a benchdnn file holds for convbench: the problems, and what was left out or ignored,
    each kind with its count and where it first appears."""

    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # kind -> where each was
    ignored: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per kind skipped or ignored, for the user."""
        say = lambda verb, kinds: [  # noqa: E731
            f"{verb} {len(places):,} {kind} (first at {places[0]})" for kind, places in kinds.items()]
        return say("skipped", self.skipped) + say("ignored", self.ignored)


@dataclass
class _State:
    """benchdnn's settings as the file sets them."""

    mb: tuple[int, ...] = (0,)
    directions: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    pooling: str = "maxpool2d"
    unrunnable: dict[str, str] = field(default_factory=dict)  # option -> why its problems are skipped
    partly: dict[str, str] = field(default_factory=dict)  # option -> why some of its values are skipped


def words(text: str, path) -> list[tuple[str, str]]:
    """(word, where) as benchdnn's batch() makes them: whitespace-separated words; a word that
    starts with ``#`` ends its line; a word ending with ``\\`` (or a lone ``\\``) is continued
    by the next word, which is appended to it."""
    found: list[tuple[str, str]] = []
    continued = False
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split():
            if word.startswith("#"):
                break
            where = f"{path}:{number}"
            if continued and found:
                before, where = found.pop()
                word = before + word
            continued = word.endswith("\\")
            if word == "\\":
                continue
            found.append((word[:-1] if continued else word, where))
    return found


def _list(value: str, option: str, where: str) -> list[str]:
    values = value.split(",")
    if not all(values):
        raise SuiteError(f"{where}: option {clip(option)!r} has an empty value in its list")
    return values


def _dtype(value: str) -> str | None:
    """convbench's dtype for a --dt or --cfg value (``f32`` or ``f32:f32:f32``), or None."""
    parts = set(value.lower().split(":"))
    return DTYPES.get(parts.pop()) if len(parts) == 1 else None


class _Reader:
    def __init__(self, strict: bool, batch: int | None):
        self.strict, self.batch = strict, batch
        self.state = _State()
        self.reading = Reading()
        self.index: dict[str, int] = {}  # a problem's place in reading.problems, by name

    def skip(self, kind: str, where: str) -> None:
        if self.strict:
            raise SuiteError(f"{where}: {kind}: convbench cannot run it as benchdnn would (--strict)")
        self.reading.skipped.setdefault(kind, []).append(where)

    def file(self, path: Path, text: str, stack: tuple[Path, ...]) -> None:
        for word, where in words(text, path):
            if word.startswith("-"):
                self.option(word, where, path, stack)
            else:
                self.descriptor(word, where)

    def option(self, option: str, where: str, path: Path, stack: tuple[Path, ...]) -> None:
        key, _, value = option.partition("=")
        state = self.state
        if key == "--reset":
            self.state = _State()
        elif key == "--batch":
            self.include(path.parent / value, where, stack)
        elif key == "--mb":
            state.mb = tuple(integer(v, where, "--mb", 0) for v in _list(value, option, where))
        elif key == "--dir":
            values = [v.upper() for v in _list(value, option, where)]
            unknown = [v for v in values if v not in DIRECTIONS]
            if unknown:
                raise SuiteError(f"{where}: option {clip(option)!r}: benchdnn has no direction {clip(unknown[0], 40)!r} "
                                 f"(it takes {', '.join(DIRECTIONS)})")
            state.directions = tuple(dict.fromkeys(DIRECTIONS[v] for v in values))
        elif key in ("--dt", "--cfg"):
            values = _list(value, option, where)
            state.dtypes = tuple(dict.fromkeys(filter(None, map(_dtype, values))))
            others = [v for v in values if not _dtype(v)]
            self.unrunnable("--dt", others and f"problem(s) in data type {clip(others[0], 40)} (convbench runs f32 and "
                            "f64)", partly=bool(state.dtypes))
        elif key == "--alg":
            self.algorithm(value)
        elif key.startswith("--attr"):
            self.unrunnable(key, value and f"problem(s) under {key} (attributes: post-ops, scales, zero points)")
        elif key in IGNORED:
            self.reading.ignored.setdefault(f"{key} setting(s) (benchdnn's harness or memory layout; convbench "
                                            "measures its own NCHW arrays)", []).append(where)
        elif key != "--conv":  # the driver these files are for
            self.unrunnable(key, f"problem(s) under {clip(key, 40)}, an option convbench does not know")

    def unrunnable(self, option: str, kind: str | None, partly: bool = False) -> None:
        """Skip the problems under ``option`` as ``kind`` until it is set again or reset (``kind``
        empty: skip none); ``partly``: the problems still run in the option's other values, and
        each is counted once as skipped in the value ``kind`` names."""
        self.state.unrunnable.pop(option, None)
        self.state.partly.pop(option, None)
        if kind:
            (self.state.partly if partly else self.state.unrunnable)[option] = kind

    def algorithm(self, value: str) -> None:
        alg = value.lower()
        if alg in POOLING:
            self.state.pooling = POOLING[alg]
        kind = None if alg in POOLING or alg in CONV_ALGORITHMS else (
            f"problem(s) under --alg={clip(value, 40)}, " + ("Winograd: no backend of convbench has it"
                                                            if alg in ("wino", "convolution_wino") else
                                                            f"an algorithm convbench does not know (it takes "
                                                            f"{', '.join(CONV_ALGORITHMS + tuple(POOLING))})"))
        self.unrunnable("--alg", kind)

    def include(self, target: Path, where: str, stack: tuple[Path, ...]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise SuiteError(f"{where}: --batch files nest deeper than {MAX_DEPTH}")
        if target.resolve() in stack:
            raise SuiteError(f"{where}: --batch={target} includes itself (through {' -> '.join(p.name for p in stack)})")
        self.file(target, read_text(target), (*stack, target.resolve()))

    def descriptor(self, text: str, where: str) -> None:
        try:
            desc = parse(text, pooling=True)  # no oc: a pooling problem (convbench's own use)
        except DescriptorError as exc:
            raise SuiteError(f"{where}: {exc}") from None
        why = _cannot_run(desc) or next(iter(self.state.unrunnable.values()), None)
        if why:
            return self.skip(why, where)
        for why in self.state.partly.values():
            self.skip(why, where)
        sizes = [self.batch] if self.batch else [mb or desc.mb for mb in self.state.mb]
        if 0 in sizes:
            self.skip("descriptor(s) with mb0, an empty batch (give --batch)", where)
        base = _name(desc, text)
        for N in filter(None, sizes):
            name = base + (f"@mb{N}" if len(sizes) > 1 else "")
            self.add(_problem(desc, name, _repeat(base), N, self.state, where))
        return None

    def add(self, problem: Problem) -> None:
        """Keep ``problem``, or merge its directions and dtypes into the one of its name and shape."""
        base, count, problems = problem.name, 1, self.reading.problems
        while (index := self.index.get(problem.name)) is not None:
            same = problems[index]
            if replace(same, directions=(), dtypes=()) == replace(problem, directions=(), dtypes=()):
                problems[index] = replace(same, directions=_union(same.directions, problem.directions),
                                          dtypes=_union(same.dtypes, problem.dtypes))
                return
            count += 1  # another shape under a name already used: a name of its own
            problem = replace(problem, name=f"{base}#{count}")
        self.index[problem.name] = len(problems)
        problems.append(problem)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return () if not a or not b else tuple(dict.fromkeys(a + b))  # () already means every one


def _name(desc: Descriptor, text: str) -> str:
    name = desc.name[1:-1] if len(desc.name) >= 2 and desc.name[0] == desc.name[-1] == '"' else desc.name
    return name or text


def _ends(axis: Axis) -> tuple[int, int] | None:
    """(near, far) padding of an axis for the kernels, or None where they cannot take it.
    benchdnn's far padding is negative where the last -p_r rows are read by no output (ResNet's
    1x1 stride-2 shortcuts: ih56 oh28 gives ph_r -1); with -s < p_r < 0 a padding of 0 gives the
    same output size, the same values and the same gradients (those rows get none either way).
    A negative near padding, or a far one of a stride or more, leaves input no padding describes."""
    if axis.p < 0 or axis.p_r <= -axis.s:
        return None
    return axis.p, max(axis.p_r, 0)


def _cannot_run(desc: Descriptor) -> str | None:
    """The kind of descriptor convbench cannot run that ``desc`` is, or None."""
    axes = (desc.height, desc.width)
    if desc.ndims == 5:
        return "3-D descriptor(s) (convbench runs 1-D and 2-D)"
    if None in map(_ends, axes):
        return "descriptor(s) with a negative padding (input rows no output reads; convbench's kernels take none)"
    if max(desc.mb, desc.ic, desc.oc, desc.g, *(max(a.i, a.o, a.k, a.s, a.p, a.p_r, a.d + 1) for a in axes)) > MAX_SIZE:
        return f"descriptor(s) with a size over 2**31 - 1 (the kernels' limit, {MAX_SIZE:,})"
    return None


def _problem(desc: Descriptor, name: str, repeat: int, N: int, state: _State, where: str) -> Problem:
    """The problem of a descriptor ``_cannot_run`` passed; SuiteError for one benchdnn would refuse."""
    h, w = desc.height, desc.width
    try:
        (top, bottom), (left, right) = _ends(h), _ends(w)
        shape = dict(name=name, N=N, C=desc.ic, H=h.i, W=w.i, R=h.k, S=w.k, repeat=repeat, stride=(h.s, w.s),
                     padding=(top, bottom, left, right), directions=state.directions, dtypes=state.dtypes)
        if desc.oc:
            return Problem(op="conv2d", K=desc.oc, groups=desc.g, dilation=(h.d + 1, w.d + 1), **shape)
        if h.d or w.d or desc.has_groups:
            raise ValueError(f"{name}: a pooling descriptor (no 'oc') takes no dilation and no groups")
        return Problem(op=state.pooling, K=desc.ic, **shape)
    except ValueError as exc:
        raise SuiteError(f"{where}: {clip(str(exc), 300)}") from None


def _repeat(name: str) -> int:
    """The count a benchdnn name ends with (``"resnet_50:res2a_branch2b*3"``), else 1."""
    match = _NAME_REPEAT.search(name)
    return min(int(match[1]), MAX_SIZE) if match and int(match[1]) > 0 else 1


def read_benchdnn(path: str | Path, text: str | None = None, strict: bool = False, batch: int | None = None) -> Reading:
    """The problems of a benchdnn batch file, and what it holds that convbench cannot run."""
    path = Path(path)
    reader = _Reader(strict, batch)
    reader.file(path, read_text(path) if text is None else text, (path.resolve(),))
    return reader.reading


def parse_descriptor(text: str, alg: str = "max") -> Problem:
    """One 1-D or 2-D descriptor as a Problem (a descriptor without ``oc`` pools with ``alg``)."""
    try:
        desc = parse(text, pooling=True)
    except DescriptorError as exc:
        raise SuiteError(str(exc)) from None
    why = _cannot_run(desc)
    if why:
        raise SuiteError(f"{clip(text)}: convbench cannot run it: it is one of the {why}")
    name = _name(desc, text)
    return _problem(desc, name, _repeat(name), desc.mb, _State(pooling=POOLING[alg]), "descriptor")
