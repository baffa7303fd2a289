"""Measurements that take turns: every entry of a group is timed a slice at a time, in a
rotating order, so drift during the group falls on all of them alike (asv's
``--interleave-rounds``, pyperf's alternating workers).

Each turn gives two *samples* per entry: the median and the fastest of the calls made in its
slice. A slice is
``budget / turns`` seconds of back-to-back calls (at least one call), or exactly one call when
``exact``. An entry whose calls are slow stops taking turns once it has spent its budget and
holds ``stats.MIN_SAMPLES`` samples, so a slow kernel costs at most that many calls beyond the
budget rather than ``turns`` of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from convbench.bench import stats
from convbench.bench.machine import CpuMeter
from convbench.bench.stats import MIN_SAMPLES

TURNS = 20


@dataclass
class Entry:
    """One thing to time. ``slice(seconds, exact)`` makes the calls and returns their times."""

    key: Hashable
    slice: Callable[[float, bool], list[float]]
    meter: CpuMeter = field(default_factory=CpuMeter)
    samples: list[float] = field(default_factory=list)  # one median per turn taken
    lows: list[float] = field(default_factory=list)  # the fastest call of each turn taken
    calls: list[int] = field(default_factory=list)  # calls made in each of those turns
    spent: float = 0.0
    error: Exception | None = None

    def summary(self) -> dict:
        """The timing fields of a results row: the raw per-turn samples (this process's) and
        their statistics."""
        return timing_fields([self.samples], [self.lows], [self.calls])


def timing_fields(medians: list[list[float]], lows: list[list[float]], calls: list[list[int]]) -> dict:
    """A row's timing fields from per-turn medians, per-turn fastest calls and call counts, one
    list of each per process that measured the row."""
    pooled = [m for process in medians for m in process]
    return {"turn_medians_s": medians, "turn_fastest_s": lows, "turn_calls": calls, "processes": len(lows),
            "calls": sum(map(sum, calls)), "turns": len(pooled), "min_s": min(map(min, lows)),
            "fastest_s": stats.typical(lows), "median_s": stats.median(pooled), "iqr_s": stats.iqr(pooled),
            "noisy": stats.is_noisy(pooled)}


def rotation(count: int, turn: int) -> list[int]:
    """Indices in the order they go in ``turn``: each turn starts one place further on."""
    first = turn % count if count else 0
    return list(range(first, count)) + list(range(first))


def paired(count: int, turn: int) -> list[int]:
    """For A/B pairs laid out as (A0, B0, A1, B1, ...): the pairs rotate as in ``rotation``, and
    within each pair A goes first on even turns and B on odd ones, so over an even number of
    turns neither side is favoured by going first or by following the other."""
    order = []
    for pair in rotation(count // 2, turn):
        order += [2 * pair, 2 * pair + 1] if turn % 2 == 0 else [2 * pair + 1, 2 * pair]
    return order


Order = Callable[[int, int], list[int]]


def turns_order(entries: list[Entry], turns: Iterable[int], order: Order = rotation) -> Iterator[tuple[int, Entry]]:
    """(turn, entry) in the order they are measured, for the turns numbered ``turns``."""
    for turn in turns:
        for index in order(len(entries), turn):
            yield turn, entries[index]


def interleave(entries: list[Entry], budget: float, turns: int = TURNS, exact: bool = False,
               order: Order = rotation, between: Callable[[], None] | None = None,
               settle: Callable[[], object] | None = None, least: int = MIN_SAMPLES,
               which: range | None = None) -> None:
    """Time every entry in ``turns`` rotating turns (see the module's docstring), or only the turns
    ``which`` of them (a caller that hands the turns out in parts, to several processes). A slice that
    raises marks its entry failed (``error``) and the others go on. ``between`` is called before
    every turn (the machine's calibration workload goes there), ``settle`` before every slice,
    outside its timing and CPU accounting (``kernels.quiet.quiesce`` goes there: no slice pays for
    the thread pool its predecessor left spinning).

    Without ``exact``, an entry whose slices have overshot its budget stops once it has
    ``least`` turns (``MIN_SAMPLES``; a process measuring its share of a row takes its share); with the ``paired`` order, A and B of a pair stop together, so that
    every pair keeps as many turns with A first as with B first."""
    partner = {id(e): entries[i ^ 1] if order is paired and (i ^ 1) < len(entries) else e
               for i, e in enumerate(entries)}

    def finished(e: Entry) -> bool:  # paired: after an even number of turns, A first as often as B
        return e.spent >= budget and len(e.samples) >= least and (order is not paired or len(e.samples) % 2 == 0)

    last_turn = -1
    for turn, entry in turns_order(entries, which if which is not None else range(turns), order):
        if turn != last_turn and between is not None and any(e.error is None for e in entries):
            between()
        last_turn = turn
        if entry.error is not None:
            continue
        if not exact and finished(entry) and (finished(partner[id(entry)]) or partner[id(entry)].error is not None):
            continue
        if settle is not None:
            settle()
        try:
            with entry.meter:
                times = entry.slice(budget / turns, exact)
        except Exception as exc:  # noqa: BLE001 -- isolate the failure; the caller records it
            entry.error = exc
            continue
        entry.samples.append(statistics.median(times))
        entry.lows.append(min(times))
        entry.calls.append(len(times))
        entry.spent += sum(times)
