"""The rules for the numbers and lists a user gives, in one place: the command line's argparse
converters (``convbench.cli.options``) and the plans read back from plan.json both check them
here, so a value refused on the command line is refused the same way in a saved plan.

Every number is bounded: a time budget of ``inf`` or a hundred million turns is not a long run,
it is a run that never ends (and ``Infinity`` is not JSON). The bounds are far above any real
use; a user who needs more is told which option to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MAX_SECONDS = 24 * 3600.0  # one measurement's budget, a window, a --max-time: a day at most
MAX_TURNS = 1000  # interleaved turns of one measurement (pyperf's default is 20 processes x 3)
MAX_ROUNDS = 10_000  # exact calls of one measurement
MAX_PROCESSES = 64  # worker processes that measure each row
MAX_SIZE = 2**31 - 1  # any size, batch or count that reaches the kernels (INTERFACE.md)
MAX_THRESHOLD = 10.0  # compare's threshold: a change of 1000 % is no threshold
MAX_EPOCHS = 10_000  # passes over a training set
MAX_LR = 1e6  # a learning rate or decay beyond this is a typo (a diverging one stops the training)


def seconds(name: str, value: float, limit: float = MAX_SECONDS) -> float:
    """A duration in seconds: a finite number > 0 and at most ``limit``."""
    value = number(name, value)
    if not 0 < value <= limit:
        raise ValueError(f"{name} must be > 0 and at most {limit:g} seconds; got {value:g}")
    return value


def whole(name: str, value: int, low: int = 1, high: int = MAX_SIZE) -> int:
    """A whole number between ``low`` and ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:,} and {high:,}; got {value:,}")
    return value


def number(name: str, value: float, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in [low, high] (an end excluded where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        ends = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {ends}; got {value:g}")
    return float(value)


def threshold(value: float) -> float:
    """compare's and ab's threshold: the smallest change worth a verdict."""
    return number("--threshold", value, 0.0, MAX_THRESHOLD)


def distinct(name: str, values: Iterable, allowed: Iterable | None = None) -> list:
    """A non-empty list without repeats (and, given ``allowed``, only those): ``--backends
    im2col,im2col`` would measure one backend twice under one name."""
    values = list(values)
    if not values:
        raise ValueError(f"{name} needs at least one value")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} names {', '.join(repeated)} more than once")
    if allowed is not None:
        allowed = list(allowed)
        bad = [str(v) for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{name} must be among {', '.join(map(str, allowed))}; got {', '.join(bad)}")
    return values
