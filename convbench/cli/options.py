"""What the commands' parsers share: argparse ``type=`` converters (each value checked as it is
parsed, by the rules of ``convbench.bench.limits``), a parser whose errors are one line, the
help formatter, and the options that say what to measure (``run`` and ``ab``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from convbench.bench import limits


class UsageError(Exception):
    """A bad command line: one line to stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the option, not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} ({self.prog} --help explains)\n")


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a real default "(default: 1.0)", never "(default: None)" or a flag's "False": an
    option whose default depends on the machine or the model says so in its own help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def checked(parse: Callable[[str], object], check: Callable[[object], object]) -> Callable[[str], object]:
    """A ``type=`` converter: ``parse`` the text, then ``check`` the value. A ValueError refuses
    it; argparse then names the option, so the message drops a name it starts with."""
    def convert(text: str):
        try:
            return check(parse(text))
        except ValueError as exc:
            message = str(exc)
            if message.startswith("-"):  # "--budget must be ...": argparse says "argument --budget: "
                message = message.split(" ", 1)[1]
            raise argparse.ArgumentTypeError(message if "got" in message else f"{message}; got {text!r}") from None
    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number") from None


NUMBER_TYPES, LIST_TYPES = ("number",), ("list",)  # the kinds of converter, for the tests of each class


def _kind(convert, kind: str, **attributes):
    convert.kind = kind
    for key, value in attributes.items():
        setattr(convert, key, value)
    return convert


def seconds(name: str) -> Callable[[str], float]:
    return _kind(checked(_real, lambda v: limits.seconds(name, v)), "number")


def whole(name: str, low: int = 1, high: int = limits.MAX_SIZE) -> Callable[[str], int]:
    return _kind(checked(_whole, lambda v: limits.whole(name, v, low, high)), "number")


def real(name: str, low: float, high: float, **open_ends) -> Callable[[str], float]:
    return _kind(checked(_real, lambda v: limits.number(name, v, low, high, **open_ends)), "number")


def threshold(text: str) -> float:
    return checked(_real, limits.threshold)(text)


_kind(threshold, "number")


def _items(name: str, text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise ValueError(f"{name} takes comma-separated values with none empty; got {text!r}")
    return parts


def names(name: str, allowed: Callable[[], list] | None = None, every: str | None = None, example: str = "x"):
    """Comma-separated names, none empty or repeated (and among ``allowed()``); ``every`` (as
    "all") stands for the default and converts to None."""
    def parse(text: str):
        if every is not None and text.strip() == every:
            return None
        return limits.distinct(name, _items(name, text), None if allowed is None else allowed())
    return _kind(checked(lambda text: text, parse), "list", example=example, distinct=True)


def wholes(name: str, low: int = 1, high: int = limits.MAX_SIZE, distinct: bool = True):
    """Comma-separated whole numbers, none empty (nor repeated, if ``distinct``), each in [low, high]."""
    def parse(text: str):
        try:
            values = [int(p) for p in _items(name, text)]
        except ValueError as exc:
            raise ValueError(str(exc) if "none empty" in str(exc)
                             else f"{name} takes comma-separated whole numbers; got {text!r}") from None
        return [limits.whole(name, v, low, high) for v in (limits.distinct(name, values) if distinct else values)]
    return _kind(checked(lambda text: text, parse), "list", example=str(low), distinct=distinct)


def backend_name(args) -> str:
    """--backend, else $CONVBENCH_BACKEND, else numba."""
    return args.backend or os.environ.get("CONVBENCH_BACKEND") or "numba"


def model_defaults(setting: str) -> str:
    """Each model's own value of a training setting, for --help: "seed000 1, seed002 4, ..."."""
    from convbench.cnn.models import MODELS

    return ", ".join(f"{name} {getattr(spec, setting):g}" if not isinstance(getattr(spec, setting), str)
                     else f"{name} {getattr(spec, setting)}" for name, spec in MODELS.items())


def load_backend(name: str):
    """The backend called ``name``; an unknown name is a usage error (an unavailable one raises
    kernels.BackendUnavailable, exit 2 too)."""
    import kernels

    try:
        return kernels.get(name)
    except ValueError as exc:
        raise UsageError(f"--backend: {exc}") from None


def machine_line() -> str:
    """The first line of every measuring command: where the figures come from."""
    from convbench.bench.results import describe_machine, machine_metadata

    return f"Machine: {describe_machine(machine_metadata())}"


def say(message: str) -> None:
    """One line to stderr, as every command reports a problem."""
    print(message, file=sys.stderr)


def plan_arguments(command: argparse.ArgumentParser) -> None:
    """What to measure: the options `run` and `ab` share."""
    from convbench.bench.problems import DIRECTIONS, OPS
    from convbench.bench.runner import DTYPES, known_backends

    add = command.add_argument
    add("--suite", type=names("--suite", example="seeds"), help="comma-separated suite names (see `convbench list`) or paths; default seeds")
    add("--backends", type=names("--backends", known_backends, every="all", example="im2col"),
        help="comma-separated backends, or all (with torch where installed); default all")
    add("--ops", type=names("--ops", lambda: list(OPS), every="all", example="conv2d"),
        help="comma-separated: conv2d, maxpool2d, avgpool2d, or all; default all")
    add("--directions", type=names("--directions", lambda: list(DIRECTIONS), every="all", example="forward"),
        help="comma-separated: forward, backward, forward+backward; default all")
    add("--dtype", type=names("--dtype", lambda: list(DTYPES), example="float32"), help="comma-separated: float32, float64; default float32")
    add("--threads", type=wholes("--threads"), help="comma-separated thread counts to sweep, e.g. 1,2; default all cores")
    add("--match", metavar="REGEX", help="only problems whose name matches")
    add("--batch", type=whole("--batch"), metavar="N", help="override every problem's batch size")
    add("--strict", action="store_true", default=None, help="refuse a benchdnn file with lines convbench cannot run")
    add("--budget", type=seconds("--budget"), metavar="SECONDS", help="repeat each measurement for about this long; default 1")
    add("--rounds", type=whole("--rounds", 1, limits.MAX_ROUNDS), metavar="N", help="exactly N turns of one call each instead of a time budget")
    add("--turns", type=whole("--turns", 1, limits.MAX_TURNS), metavar="N", help="the budget is spent in N "
        "interleaved turns, one sample each; default 20")
    add("--window", type=seconds("--window"), metavar="SECONDS", help="problems whose timing budgets add up to "
        "about this take turns together, so each measurement's turns spread over the window; default 60")
    add("--max-time", type=seconds("--max-time"), metavar="SECONDS", help="skip a measurement whose single call "
        "is estimated to take longer; default 10")
    add("--processes", type=whole("--processes", 1, limits.MAX_PROCESSES), metavar="N",
        help="measure every row in N fresh worker processes, each taking its share of the turns and the budget: a "
             "process's own speed (its buffers, its thread pools) becomes a sample, and compare needs 3 per side "
             "to call a row slower or faster; default 3, or $CONVBENCH_PROCESSES")
