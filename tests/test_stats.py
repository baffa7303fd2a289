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


def processes(rng, count: int, shift: float = 1.0, offset: float = 0.0, turns: int = 7, fast_share: float = 0.6):
    """``count`` processes' per-turn fastest calls on a shared machine, each process running at a
    speed of its own (a log-normal offset of spread ``offset``), times ``shift``."""
    return [shift * np.exp(rng.normal(0.0, offset)) * shared_vm(rng, turns, fast_share) for _ in range(count)]


def quiet(rng, count: int = 3, shift: float = 1.0, turns: int = 10):
    return [shift * rng.normal(1.0, 0.005, turns) for _ in range(count)]


def test_a_flat_list_is_one_process_and_its_speed_is_its_fastest_call():
    assert [p.tolist() for p in stats.processes([3.0, 1.0, 2.0])] == [[3.0, 1.0, 2.0]]
    assert len(stats.processes([[1.0, 2.0], [], [3.0]])) == 2  # a process with no sample is dropped
    assert stats.typical([[1.0, 2.0], [4.0, 5.0]]) == pytest.approx(2.0)  # geometric mean of 1 and 4


def test_interval_holds_the_true_ratio():
    rng = np.random.default_rng(1)
    old, new = processes(rng, 6, offset=0.02), processes(rng, 6, 1.3, offset=0.02)
    ratio, low, high = stats.ratio_interval(old, new)
    assert low <= 1.3 <= high and low < ratio < high


@pytest.mark.parametrize("shift, expected", [(1.0, "same"), (1.25, "slower"), (0.75, "faster"), (1.4, "slower")])
def test_known_shift_quiet_processes(shift, expected):
    rng = np.random.default_rng(2)
    assert stats.verdict(quiet(rng), quiet(rng, shift=shift), 0.10).word == expected


def test_a_shift_inside_the_threshold_is_same():
    rng = np.random.default_rng(3)
    assert stats.verdict(quiet(rng), quiet(rng, shift=1.05), 0.10).word == "same"


def test_processes_that_disagree_are_too_noisy_for_a_verdict():
    old = [np.ones(6), np.ones(6), np.ones(6)]
    new = [1.0 * np.ones(6), 1.3 * np.ones(6), 1.6 * np.ones(6)]  # one process as fast as OLD's
    v = stats.verdict(old, new, 0.10)
    assert v.word == "inconclusive" and "too noisy" in v.reason and v.low < 1.1 < v.high


@pytest.mark.parametrize("count", [1, 2])
def test_fewer_than_three_processes_never_call_a_change(count):
    old, new = [np.ones(10)] * count, [2.0 * np.ones(10) + 0.01 * i for i in range(count)]
    v = stats.verdict(old, new, 0.10)
    assert v.word == "inconclusive" and f"{count} process" in v.reason and "--processes" in v.reason


def test_two_processes_can_be_the_same():
    rng = np.random.default_rng(7)
    assert stats.verdict(quiet(rng, 2), quiet(rng, 2), 0.10).word == "same"


def test_contended_is_never_faster_or_slower():
    rng = np.random.default_rng(8)
    v = stats.verdict(quiet(rng), quiet(rng, shift=2.0), 0.10, contended=True)
    assert v.word == "inconclusive" and v.reason.startswith("contended") and v.ratio == pytest.approx(2.0, rel=0.02)


def test_too_few_samples_is_inconclusive():
    v = stats.verdict([[1.0], [1.0], [1.0]], [[2.0], [2.0], [2.0]], 0.10)
    assert v.word == "inconclusive" and "3 samples" in v.reason


def test_a_change_no_larger_than_the_machines_drift_is_not_blamed_on_the_code():
    rng = np.random.default_rng(9)
    old, new = quiet(rng), quiet(rng, shift=1.15)
    assert stats.verdict(old, new, 0.10).word == "slower"
    v = stats.verdict(old, new, 0.10, drift=(1.05, 1.2))
    assert v.word == "inconclusive" and "drift [1.050, 1.200]" in v.reason
    assert stats.verdict(old, quiet(rng, shift=1.4), 0.10, drift=(1.05, 1.2)).word == "slower"  # beyond the drift
    # an uncertain drift widens both sides: a 20 % speed-up inside [0.8, 1.05] x threshold is not called faster
    assert stats.verdict(old, quiet(rng, shift=0.8), 0.10, drift=(0.8, 1.05)).word == "inconclusive"


@pytest.mark.parametrize("threshold", [float("nan"), -0.1])
def test_a_threshold_that_is_nan_or_negative_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        stats.verdict(np.ones(10), np.ones(10), threshold)


@pytest.mark.parametrize("offset", [0.0, 0.03, 0.05])
@pytest.mark.parametrize("fast_share", [0.4, 0.6])
def test_a_process_offset_alone_is_never_a_change_of_code(fast_share, offset):
    """A/A on synthetic shared-VM samples where every process also runs at a speed of its own (a
    spread between processes of up to 5 %): identical code is never called faster or slower in
    300 comparisons of 3 processes against 3."""
    rng = np.random.default_rng(4)
    words = [stats.verdict(processes(rng, 3, offset=offset, fast_share=fast_share),
                           processes(rng, 3, offset=offset, fast_share=fast_share), 0.10).word for _ in range(300)]
    assert words.count("slower") + words.count("faster") == 0


@pytest.mark.parametrize("offset, rate", [(0.10, 0.005), (0.25, 0.02)])
def test_where_processes_differ_as_much_as_the_threshold_false_verdicts_stay_rare(offset, rate):
    """The limit of 3 processes: where processes differ by as much as the threshold, three of
    them sometimes look like a change (the interval is a 95 % one, so at most 2.5 % per side
    however wide the spread); the rate stays under ``rate`` (seen: 0.2 % and 1.2 %)."""
    rng = np.random.default_rng(13)
    words = [stats.verdict(processes(rng, 3, offset=offset), processes(rng, 3, offset=offset), 0.10).word
             for _ in range(1000)]
    assert (words.count("slower") + words.count("faster")) / 1000 <= rate


def test_one_slow_process_is_not_a_slowdown():
    """The false verdicts of two one-process runs: a process 1.25x slower than the others, on
    either side, gives no verdict however quiet its turns."""
    rng = np.random.default_rng(10)
    for _ in range(50):
        old, new = quiet(rng), quiet(rng)
        new[int(rng.integers(3))] *= 1.25
        assert stats.verdict(old, new, 0.10).word == "inconclusive"
        assert stats.verdict(new, old, 0.10).word == "inconclusive"


@pytest.mark.parametrize("fast_share, judged", [(0.4, 0.7), (0.6, 0.95)])
def test_identical_processes_are_mostly_judged_same(fast_share, judged):
    rng = np.random.default_rng(11)
    words = [stats.verdict(processes(rng, 3, fast_share=fast_share), processes(rng, 3, fast_share=fast_share),
                           0.10).word for _ in range(300)]
    assert words.count("same") >= judged * 300


@pytest.mark.parametrize("fast_share, count, power", [(0.4, 3, 0.7), (0.6, 3, 0.9), (0.4, 5, 0.85)])
def test_power_on_a_shared_machine(fast_share, count, power):
    """A 1.25x slowdown under the same noise, processes within 1 % of each other, is called
    slower in most comparisons (at least 90 % with 3 processes where 6 turns in 10 run fast), and
    never faster."""
    rng = np.random.default_rng(5)
    words = [stats.verdict(processes(rng, count, offset=0.01, fast_share=fast_share),
                           processes(rng, count, 1.25, offset=0.01, fast_share=fast_share), 0.10).word
             for _ in range(300)]
    assert words.count("slower") >= power * 300 and words.count("faster") == 0


def test_medians_would_not_do_on_a_shared_machine():
    """Why a process's speed is its fastest call: the same A/A on medians flips."""
    rng = np.random.default_rng(6)
    ratios = [np.median(shared_vm(rng)) / np.median(shared_vm(rng)) for _ in range(400)]
    fastest = [np.min(shared_vm(rng)) / np.min(shared_vm(rng)) for _ in range(400)]
    assert np.mean(np.abs(np.log(ratios)) > np.log(1.1)) > 0.3
    assert np.mean(np.abs(np.log(fastest)) > np.log(1.1)) < 0.05


def test_a_bootstrap_of_a_sample_minimum_collapses():
    """Why the interval is not a bootstrap over turns of their minimum: about 64 % of resamples
    hold the sample's minimum, so the resampled minima equal it most of the time and the
    interval closes on that side, however the next process would have run."""
    rng = np.random.default_rng(12)
    turns = rng.normal(1.0, 0.05, 20)
    minima = turns[rng.integers(0, 20, (4000, 20))].min(axis=1)
    assert np.mean(minima == turns.min()) == pytest.approx(1 - (19 / 20) ** 20, abs=0.03)
