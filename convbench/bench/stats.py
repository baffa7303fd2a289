"""Statistics of timing samples: pure functions on arrays, no I/O, no clock.

A *sample* is one number per turn of an interleaved measurement (the median, or the fastest,
of the calls made in that turn), so the spread of the samples is the spread over the whole run,
drift included, not only the jitter between back-to-back calls.

The verdict compares the *fastest* calls: on a shared virtual machine the speed of the whole
machine flips between states (a pure-Python loop's time has a relative IQR near 0.5 on the
2-core KVM guests we measure on, and tiny kernels follow it), so the median of a run depends
on how much of it fell in slow states, while the fastest call, the code's cost when nothing
interferes, repeats within a few percent from run to run (timeit's argument for the minimum;
the README quotes the A/A figures). The per-turn fastest calls are the samples; the statistic
is their minimum, and its uncertainty a bootstrap over turns: when only one turn ran fast, the
interval reaches up to the slower turns and the verdict becomes inconclusive.

The verdict is an equivalence test on the ratio (NEW / OLD) with that 95 % interval:

=============  =========================================================================
verdict        when
=============  =========================================================================
slower         the whole interval lies above ``1 + threshold`` (times the machine's drift)
faster         the whole interval lies below ``1 / (1 + threshold)`` (likewise)
same           the whole interval lies inside ``[1 / (1 + threshold), 1 + threshold]``
inconclusive   anything else: too few samples, an interval that straddles a bound (too
               noisy for the threshold asked), a change no larger than the machine's own
               drift, or a measurement taken while other processes held the cores
=============  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

NOISY_SPREAD = 0.10  # relative IQR (IQR / median) above which a measurement is noisy
MIN_SAMPLES = 5  # fewer samples on either side than this: no verdict
CONFIDENCE = 0.95
RESAMPLES = 2000
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


def ratio_interval(old: ArrayLike, new: ArrayLike, statistic: Statistic = np.min, confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(statistic(new) / statistic(old), low, high): a percentile-bootstrap interval of that ratio."""
    a, b = _array(old), _array(new)
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    ratio = float(statistic(b) / statistic(a))
    rng = np.random.default_rng(seed)
    boot_a = statistic(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    boot_b = statistic(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot_b / boot_a, [tail, 1 - tail])
    return ratio, float(low), float(high)


@dataclass(frozen=True)
class Verdict:
    word: str  # one of VERDICTS
    ratio: float  # fastest(new) / fastest(old)
    low: float  # the confidence interval of the ratio
    high: float
    reason: str = ""  # why inconclusive

    @property
    def interval(self) -> str:
        if not np.isfinite(self.low):
            return "-"
        return f"[{self.low:.3f}, {self.high:.3f}]"


def verdict(old: ArrayLike, new: ArrayLike, threshold: float, *, drift: tuple[float, float] = (1.0, 1.0),
            contended: bool = False, medians: tuple[ArrayLike, ArrayLike] | None = None,
            confidence: float = CONFIDENCE) -> Verdict:
    """Judge NEW's per-turn fastest calls against OLD's (see the module's table).

    ``drift`` is the interval of the machine's own change of speed between the two (NEW / OLD of
    a fixed calibration workload; (1, 1) when it cannot change, as in an interleaved A/B): a
    change that does not reach beyond the whole interval is not blamed on the code.
    ``medians`` (OLD's and NEW's per-turn medians), when given, must agree: a change of code
    moves the typical call as well as the fastest, so `slower` also needs the ratio of medians
    above ``1 + threshold`` (and `faster` below its inverse); a shift of the fastest calls alone
    is a state of the machine (a lucky or unlucky process), and inconclusive.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0; got {threshold}")
    a, b = _array(old), _array(new)
    ratio, low, high = ratio_interval(a, b, np.min, confidence)
    if min(len(a), len(b)) < MIN_SAMPLES:
        return Verdict("inconclusive", ratio, float("nan"), float("nan"),
                       f"{min(len(a), len(b))} samples; a verdict needs {MIN_SAMPLES}")
    if contended:
        return Verdict("inconclusive", ratio, low, high, "contended: other processes held the cores")
    slow, fast = 1 + threshold, 1 / (1 + threshold)
    typical = median(medians[1]) / median(medians[0]) if medians is not None else ratio
    disagree = f"the medians moved {typical:.3f} only: the fastest calls alone do not make a change of code"
    if low > slow * max(drift[1], 1.0):
        return Verdict("slower", ratio, low, high) if typical > slow else Verdict(
            "inconclusive", ratio, low, high, disagree)
    if high < fast * min(drift[0], 1.0):
        return Verdict("faster", ratio, low, high) if typical < fast else Verdict(
            "inconclusive", ratio, low, high, disagree)
    if fast <= low and high <= slow:
        return Verdict("same", ratio, low, high)
    if low > slow or high < fast:
        return Verdict("inconclusive", ratio, low, high,
                       f"within the machine's own drift [{drift[0]:.3f}, {drift[1]:.3f}]")
    return Verdict("inconclusive", ratio, low, high, f"too noisy for a {threshold:.0%} threshold")
