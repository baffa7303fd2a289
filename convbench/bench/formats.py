"""How a number is written for a reader, stated once for every table, report and page.

Three significant digits, thousands grouped, never an exponent (``0.00256``, ``4.21``, ``789``,
``6,470,000``); a time in a unit that suits it (``4.21 ms``), or a column of times in one unit
named in its header, chosen as torch.utils.benchmark's ``Compare`` and pytest-benchmark choose it
(the largest unit in which the column's fastest time is at least 1); a ratio with its ``x``; a
share as a percentage with its ``%``. Anything not measured (NaN, None) is ``-``.
"""

from __future__ import annotations

import math
import numbers

UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
MISSING = "-"


def measured(value) -> bool:
    """A finite number (numpy's included), not NaN, None, a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def number(value) -> str:
    """``value`` to three significant digits, thousands grouped, with no exponent."""
    if not measured(value):
        return MISSING
    value = float(f"{value:.3g}")  # rounded to three significant digits first: 6,472,345 -> 6,470,000
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def time_unit(seconds) -> tuple[str, float]:
    """(name, seconds per unit) of the largest unit that shows the smallest of ``seconds`` as a
    number >= 1: one unit for a column or a table of times."""
    finite = [s for s in seconds if measured(s) and s > 0]
    smallest = min(finite, default=1.0)
    return next(((name, scale) for name, scale in UNITS if smallest >= scale), UNITS[-1])


def in_unit(seconds, unit: tuple[str, float]) -> str:
    """``seconds`` as a number of ``unit`` (from ``time_unit``), for a column that names it."""
    return number(seconds / unit[1]) if measured(seconds) else MISSING


def duration(seconds) -> str:
    """``seconds`` with the unit that suits it alone ("4.21 ms")."""
    if not measured(seconds):
        return MISSING
    seconds = float(f"{seconds:.3g}")  # 999.9 µs is 1.00 ms, not 1,000 µs
    name, scale = time_unit([abs(seconds)])
    return f"{number(seconds / scale)} {name}"


def ratio(value) -> str:
    """A ratio of two times or speeds ("1.16x", "5,290x", "0.00256x")."""
    return f"{number(value)}x" if measured(value) else MISSING


def percent(value) -> str:
    """A share already in percent ("0.74 %", "63.2 %")."""
    return f"{number(value)} %" if measured(value) else MISSING


def mebibytes(count) -> str:
    """A byte count in MiB ("1.54 MiB", "2,050 MiB")."""
    return f"{number(count / 2**20)} MiB" if measured(count) else MISSING


# Measurements whose times are in doubt, marked in every table's cell and warned of above a table
NOISY_MARK, CONTENDED_MARK = "~", "!"
MARKS = (f"`{NOISY_MARK}` noisy: the median of the turns' times spread by more than 10 % (IQR / median); "
         f"`{CONTENDED_MARK}` contended: other processes held the cores this measurement asked for.")
MOSTLY = 0.5  # the share of a table's rows so marked above which the table gets a banner
DOUBTS = {"contended": "other processes held the cores they asked for, so their times show the machine's load as "
                       "much as the code (a kernel on more threads than the free cores waits milliseconds a call for "
                       "its last thread, so a fast backend can read as slow as naive)",
          "noisy": "their turns' times spread by more than 10 %, so their medians are uncertain by about as much"}


def marks(row) -> str:
    """The marks of one measurement's cell ("", "~", "!" or "~!")."""
    return ((NOISY_MARK if row.get("noisy") == True else "")  # noqa: E712 (NaN, None: not marked)
            + (CONTENDED_MARK if row.get("contended") == True else ""))  # noqa: E712


def banner(rows, what: str = "these measurements") -> list[str]:
    """Markdown lines warning above a table whose rows (a DataFrame) were mostly contended or noisy,
    with the share and what to do; none otherwise."""
    lines = []
    for flag, why in DOUBTS.items():
        marked = int(rows[flag].eq(True).sum()) if flag in rows else 0
        if len(rows) and marked > MOSTLY * len(rows):
            lines.append(f"> **Warning: {marked} of {len(rows)} of {what} were {flag}**: {why}. Measure again on a "
                         "quiet machine, or compare two revisions with `convbench ab`, which measures both in turns "
                         "so that the load falls on both alike.")
    return [*lines, ""] if lines else []
