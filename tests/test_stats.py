"""The statistics behind every verdict, on synthetic samples with known shifts and known noise."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.bench import stats


def shared_vm(rng, turns: int = 10, fast_share: float = 0.4) -> np.ndarray:
    """Per-turn fastest calls as a shared virtual machine gives them: in a fast state (the code's
    own cost, with 1 % jitter) in ``fast_share`` of the turns, otherwise 1.2x to 2x slower."""
    slow = rng.uniform(1.2, 2.0, turns)
    return np.where(rng.random(turns) < fast_share, 1.0, slow) * rng.normal(1.0, 0.01, turns)


@pytest.mark.parametrize("samples, noisy", [
    ([4.0, 49.0, 94.0], True),  # 3 rounds: IQR 45 on a median of 49
    ([1.0, 1.01, 1.02], False),
    ([1.0, 1.5], True),
    ([1.0], True),  # one round says nothing of the spread: never vouched for
    ([], True),
    ([1.0, 1.01, 1.02, 0.99, 100.0], False),  # one outlier does not move the IQR
    ([1.0, 1.0, 1.0, 2.0, 2.0, 2.0], True),  # bimodal
])
def test_noisy_rule_at_any_number_of_rounds(samples, noisy):
    assert stats.is_noisy(samples) is noisy


def test_relative_iqr_and_median():
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.relative_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)
    assert np.isnan(stats.relative_iqr([5.0]))


def test_blocks_summarise_consecutive_calls():
    times = np.arange(100.0)
    assert stats.blocks(times, 10).tolist() == [4.5 + 10 * i for i in range(10)]
    assert stats.blocks(times, 10, statistic=np.min).tolist() == [10.0 * i for i in range(10)]
    assert stats.blocks([3.0, 1.0], 10).tolist() == [3.0, 1.0]


def test_interval_holds_the_true_ratio():
    rng = np.random.default_rng(1)
    old = 1.0 + rng.exponential(0.05, 40)
    ratio, low, high = stats.ratio_interval(old, 1.3 * old[::-1])
    assert ratio == pytest.approx(1.3) and low <= 1.3 <= high


@pytest.mark.parametrize("shift, expected", [(1.0, "same"), (1.25, "slower"), (0.75, "faster"), (1.4, "slower")])
def test_known_shift_quiet_samples(shift, expected):
    rng = np.random.default_rng(2)
    old = rng.normal(1.0, 0.005, 10)
    new = shift * rng.normal(1.0, 0.005, 10)
    assert stats.verdict(old, new, 0.10).word == expected


def test_a_shift_inside_the_threshold_is_same():
    rng = np.random.default_rng(3)
    assert stats.verdict(rng.normal(1.0, 0.002, 10), rng.normal(1.05, 0.002, 10), 0.10).word == "same"


def test_interval_straddling_the_threshold_is_inconclusive():
    old = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    new = np.array([1.1, 1.1, 1.3, 1.3, 1.3, 1.3])  # the fastest NEW turn sits on the bound
    v = stats.verdict(old, new, 0.10)
    assert v.word == "inconclusive" and "too noisy" in v.reason and v.low <= 1.1 < v.high


def test_contended_is_never_faster_or_slower():
    old, new = np.ones(10), 2.0 * np.ones(10)
    v = stats.verdict(old, new, 0.10, contended=True)
    assert v.word == "inconclusive" and v.reason.startswith("contended") and v.ratio == 2.0


def test_too_few_samples_is_inconclusive():
    v = stats.verdict([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], 0.10)
    assert v.word == "inconclusive" and "3 samples" in v.reason


def test_a_change_no_larger_than_the_machines_drift_is_not_blamed_on_the_code():
    old, new = np.ones(10), 1.15 * np.ones(10)
    assert stats.verdict(old, new, 0.10).word == "slower"
    v = stats.verdict(old, new, 0.10, drift=(1.05, 1.12))
    assert v.word == "inconclusive" and "drift [1.050, 1.120]" in v.reason
    assert stats.verdict(old, 1.3 * np.ones(10), 0.10, drift=(1.05, 1.12)).word == "slower"  # beyond the drift
    # an uncertain drift widens both sides: a 20 % speed-up inside [0.8, 1.05] x threshold is not called faster
    assert stats.verdict(old, 0.8 * np.ones(10), 0.10, drift=(0.8, 1.05)).word == "inconclusive"


def test_a_shift_of_the_fastest_calls_alone_is_not_a_change_of_code():
    """A process that ran its fastest calls 30 % slower while its typical calls held still (a
    state of the machine) is inconclusive; when the medians move beyond the threshold too, slower."""
    old, new = np.ones(10), 1.3 * np.ones(10)
    v = stats.verdict(old, new, 0.10, medians=(2 * np.ones(10), 2.1 * np.ones(10)))
    assert v.word == "inconclusive" and "medians moved 1.050 only" in v.reason
    assert stats.verdict(old, new, 0.10, medians=(2 * np.ones(10), 2.4 * np.ones(10))).word == "slower"
    assert stats.verdict(new, old, 0.10, medians=(2 * np.ones(10), 1.95 * np.ones(10))).word == "inconclusive"


@pytest.mark.parametrize("threshold", [float("nan"), -0.1])
def test_a_threshold_that_is_nan_or_negative_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        stats.verdict(np.ones(10), np.ones(10), threshold)


@pytest.mark.parametrize("fast_share, judged", [(0.4, 0.4), (0.6, 0.9)])
def test_false_verdicts_are_rare_on_a_shared_machine(fast_share, judged):
    """A/A on synthetic shared-VM samples: identical code is never called faster or slower in
    400 comparisons, and most are judged `same` rather than left inconclusive (fewer when fast
    turns are rarer)."""
    rng = np.random.default_rng(4)
    words = [stats.verdict(shared_vm(rng, fast_share=fast_share), shared_vm(rng, fast_share=fast_share), 0.10).word
             for _ in range(400)]
    assert words.count("slower") + words.count("faster") == 0
    assert words.count("same") >= judged * 400


@pytest.mark.parametrize("fast_share, power", [(0.4, 0.65), (0.6, 0.9)])
def test_power_on_a_shared_machine(fast_share, power):
    """A 1.25x slowdown under the same noise is called slower in most comparisons (at least 90 %
    when 6 turns in 10 run fast), and never faster."""
    rng = np.random.default_rng(5)
    words = [stats.verdict(shared_vm(rng, fast_share=fast_share), 1.25 * shared_vm(rng, fast_share=fast_share),
                           0.10).word for _ in range(400)]
    assert words.count("slower") >= power * 400 and words.count("faster") == 0


def test_medians_would_not_do_on_a_shared_machine():
    """Why the verdict compares the fastest calls: the same A/A on medians flips."""
    rng = np.random.default_rng(6)
    ratios = [np.median(shared_vm(rng)) / np.median(shared_vm(rng)) for _ in range(400)]
    fastest = [np.min(shared_vm(rng)) / np.min(shared_vm(rng)) for _ in range(400)]
    assert np.mean(np.abs(np.log(ratios)) > np.log(1.1)) > 0.3
    assert np.mean(np.abs(np.log(fastest)) > np.log(1.1)) < 0.05
