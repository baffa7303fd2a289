"""Statistics of timing samples: pure functions on arrays, no I/O, no clock.

A *sample* is one number per turn of an interleaved measurement (the median, or the fastest,
of the calls made in that turn), so the spread of the samples is the spread over the whole run,
drift included, not only the jitter between back-to-back calls. A measurement is made by
several processes, each taking its turns, because a process has a speed of its own (where its
buffers and its JIT code landed, how its threads were placed: each turn of a process agrees, the
next process runs the row at another speed). The process is therefore the unit of the verdict:

- a process's *speed* is the lower quartile of its per-turn fastest calls. On a shared virtual
  machine whose speed flips between states, the median of a run depends on how much of it fell
  in slow states, while the fastest call of a typical fast turn repeats; unlike the sample
  minimum, a quartile has a sound bootstrap;
- the measurement's statistic (``typical``) is the geometric mean of its processes' speeds;
- its uncertainty comes from how much the processes differ: Welch's t interval on the log
  speeds, the processes the unit (never a bootstrap of a sample minimum, whose resamples hold
  the minimum itself two times in three). One process per side gives no interval, and fewer
  than ``MIN_PROCESSES`` never ``slower`` or ``faster``.

The verdict is an equivalence test on the ratio (NEW / OLD) with that 95 % interval:

=============  =========================================================================
verdict        when
=============  =========================================================================
slower         the whole interval lies above ``1 + threshold`` (times the machine's drift),
               each side measured by at least ``MIN_PROCESSES`` processes
faster         the whole interval lies below ``1 / (1 + threshold)`` (likewise)
same           the whole interval lies inside ``[1 / (1 + threshold), 1 + threshold]``
inconclusive   anything else: too few samples or processes, an interval that straddles a
               bound (too noisy for the threshold asked), a change no larger than the
               machine's own drift, or a measurement taken while other processes held the cores
=============  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

NOISY_SPREAD = 0.10  # relative IQR (IQR / median) above which a measurement is noisy
MIN_SAMPLES = 5  # fewer samples on either side than this: no verdict
CONFIDENCE = 0.95
VERDICTS = ("faster", "slower", "same", "inconclusive")
Statistic = Callable[..., np.ndarray]  # np.min, np.median: called with or without an axis


def _array(samples: ArrayLike) -> np.ndarray:
    values = np.asarray(samples, dtype=float).ravel()
    return values[np.isfinite(values)]


def median(samples: ArrayLike) -> float:
    values = _array(samples)
    return float(np.median(values)) if len(values) else float("nan")


def iqr(samples: ArrayLike) -> float:
    """Interquartile range (linear interpolation, as numpy's default); 0 for one sample."""
    values = _array(samples)
    if not len(values):
        return float("nan")
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


def relative_iqr(samples: ArrayLike) -> float:
    """IQR / median; NaN when fewer than two samples say nothing about the spread."""
    values = _array(samples)
    if len(values) < 2:
        return float("nan")
    middle = float(np.median(values))
    return iqr(values) / middle if middle > 0 else float("nan")


def is_noisy(samples: ArrayLike, limit: float = NOISY_SPREAD) -> bool:
    """True when the relative IQR exceeds ``limit``, or cannot be known (fewer than 2 samples)."""
    spread = relative_iqr(samples)
    return not spread <= limit


def blocks(times: ArrayLike, count: int = 10, statistic: Statistic = np.median) -> np.ndarray:
    """``statistic`` (median, min) of ``count`` consecutive blocks of a contiguous series of call times.

    Back-to-back calls are not independent (the machine's state persists over many of them), so
    their raw spread understates the uncertainty; blocks are samples the bootstrap may treat
    as independent, as an interleaved run's turns are. A series shorter than ``count`` is
    returned as it is.
    """
    values = _array(times)
    if len(values) <= count:
        return values
    return np.array([statistic(part) for part in np.array_split(values, count)])


Samples = Sequence[Sequence[float]]  # per process: that process's per-turn fastest calls
MIN_PROCESSES = 3  # fewer processes on either side than this: never ``slower`` or ``faster``


def processes(samples: Samples | ArrayLike) -> list[np.ndarray]:
    """``samples`` as one array per process (finite values only; processes left empty are
    dropped). A flat list of numbers is one process's samples."""
    if len(samples) and all(np.ndim(s) == 0 for s in samples):
        samples = [samples]
    return [values for values in (_array(s) for s in samples) if len(values)]


def process_speed(samples: ArrayLike) -> float:
    """One process's speed: its fastest call (the minimum of its per-turn fastest calls)."""
    values = _array(samples)
    return float(values.min()) if len(values) else float("nan")


def typical(samples: Samples | ArrayLike) -> float:
    """The statistic the verdict compares: each process's speed, geometric mean over processes."""
    speeds = [process_speed(p) for p in processes(samples)]
    return float(np.exp(np.mean(np.log(speeds)))) if speeds else float("nan")


def ratio_interval(old: Samples | ArrayLike, new: Samples | ArrayLike,
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(typical(new) / typical(old), low, high): the ``confidence`` interval of that ratio from
    Welch's t-test on the processes' log speeds (each process one value, as asv treats them).
    The interval is NaN when a side holds fewer than 2 processes: one process says nothing of
    how much processes differ."""
    a, b = (np.log([process_speed(p) for p in processes(side)]) for side in (old, new))
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    ratio = float(np.exp(b.mean() - a.mean()))
    if min(len(a), len(b)) < 2:
        return ratio, float("nan"), float("nan")
    if not (a.var() > 0 or b.var() > 0):  # identical processes: the interval is the point
        return ratio, ratio, ratio
    import scipy.stats  # here, not at the top: half a second off the start of every command

    low, high = scipy.stats.ttest_ind(b, a, equal_var=False).confidence_interval(confidence)
    return ratio, float(np.exp(low)), float(np.exp(high))


@dataclass(frozen=True)
class Verdict:
    word: str  # one of VERDICTS
    ratio: float  # typical(new) / typical(old)
    low: float  # the confidence interval of the ratio
    high: float
    reason: str = ""  # why inconclusive

    @property
    def interval(self) -> str:
        if not np.isfinite(self.low):
            return "-"
        return f"[{self.low:.3f}, {self.high:.3f}]"


def verdict(old: Samples | ArrayLike, new: Samples | ArrayLike, threshold: float, *,
            drift: tuple[float, float] = (1.0, 1.0), contended: bool = False,
            confidence: float = CONFIDENCE) -> Verdict:
    """Judge NEW's per-process, per-turn fastest calls against OLD's (see the module's table).

    ``drift`` is the interval of the machine's own change of speed between the two (NEW / OLD of
    a fixed calibration workload; (1, 1) when it cannot change, as in an interleaved A/B): a
    change that does not reach beyond the whole interval is not blamed on the code. A side
    measured by fewer than ``MIN_PROCESSES`` processes can be judged ``same`` but never
    ``slower`` or ``faster``: the speed of one process is one sample of the processes the code
    can run in, however many turns it took.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0; got {threshold}")
    a, b = processes(old), processes(new)
    ratio, low, high = ratio_interval(a, b, confidence)
    turns = min(sum(map(len, a)), sum(map(len, b)))
    if turns < MIN_SAMPLES:
        return Verdict("inconclusive", ratio, float("nan"), float("nan"),
                       f"{turns} samples; a verdict needs {MIN_SAMPLES}")
    if contended:
        return Verdict("inconclusive", ratio, low, high, "contended: other processes held the cores")
    slow, fast = 1 + threshold, 1 / (1 + threshold)
    few = min(len(a), len(b))
    if not np.isfinite(low):
        return Verdict("inconclusive", ratio, low, high,
                       f"{few} process on a side: how far processes differ is unknown (measure with --processes "
                       f"{MIN_PROCESSES} or more)")
    if fast <= low and high <= slow:
        return Verdict("same", ratio, low, high)
    if few < MIN_PROCESSES and (low > slow or high < fast):
        return Verdict("inconclusive", ratio, low, high,
                       f"{few} processes on a side: a change of code needs {MIN_PROCESSES} (--processes)")
    if low > slow * max(drift[1], 1.0):
        return Verdict("slower", ratio, low, high)
    if high < fast * min(drift[0], 1.0):
        return Verdict("faster", ratio, low, high)
    if low > slow or high < fast:
        return Verdict("inconclusive", ratio, low, high,
                       f"within the machine's own drift [{drift[0]:.3f}, {drift[1]:.3f}]")
    return Verdict("inconclusive", ratio, low, high, f"too noisy for a {threshold:.0%} threshold")
