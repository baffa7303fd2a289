"""What the harness knows about backends, read from ``kernels``' registry by name, never assumed
from the name itself. Names that no longer load (a run measured by an older version) get the
defaults: a contender, placed after the registered ones."""

from __future__ import annotations

from collections.abc import Iterable

import kernels


def traits(name: str) -> kernels.Traits:
    try:
        return kernels.traits(name)
    except ValueError:  # not registered (any more)
        return kernels.Traits()


def order(names: Iterable[str]) -> list[str]:
    """The distinct ``names`` in the registry's order (yardsticks, then unknown names, last)."""
    known = [*kernels.names(), *kernels.yardsticks()]
    return sorted(set(names), key=lambda b: (known.index(b) if b in known else len(known), b))


def contenders(names: Iterable[str]) -> list[str]:
    """The backends that compete for "fastest" (not one that only repeats the backend it picked)."""
    return [n for n in order(names) if traits(n).contender]


def ours(names: Iterable[str]) -> list[str]:
    """The contenders that are this project's own (outside yardsticks left out)."""
    return [n for n in contenders(names) if n not in kernels.yardsticks()]


def pickers(names: Iterable[str]) -> list[str]:
    """The backends that run another backend per problem (and say which: ``pick_of``)."""
    return [n for n in order(names) if traits(n).picks]


def baseline(names: Iterable[str]) -> str | None:
    """The backend speed-ups are measured against, if it is among ``names``."""
    return next((n for n in order(names) if traits(n).baseline), None)
