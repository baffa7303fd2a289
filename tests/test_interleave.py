"""The order in which measurements take turns, verified like a kernel: on fake clocks, not timings."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.bench import stats
from convbench.bench.abworker import PAGE, fresh_inputs
from convbench.bench.interleave import Entry, interleave, paired, rotation, turns_order
from convbench.bench.machine import CpuMeter


def fake(key, seen: list, cost=None) -> Entry:
    """An entry whose slice records that it ran and returns made-up call times."""
    def slice_(seconds, exact):
        seen.append(key)
        return [cost(len(seen)) if cost else 0.001] * (1 if exact else 3)
    return Entry(key, slice_, CpuMeter())


def test_rotation_starts_one_place_further_each_turn():
    entries = [Entry(k, None) for k in "ABC"]
    order = [e.key for _, e in turns_order(entries, range(3))]
    assert order == list("ABC" "BCA" "CAB")
    assert rotation(0, 5) == []


def test_pairs_alternate_who_goes_first():
    assert paired(4, 0) == [0, 1, 2, 3]
    assert paired(4, 1) == [3, 2, 1, 0]
    firsts = [paired(2, turn)[0] for turn in range(10)]
    assert firsts.count(0) == firsts.count(1) == 5


def test_exact_turns_give_one_sample_per_turn_and_calibrate_between():
    seen, calibrations = [], []
    entries = [fake(k, seen) for k in "AB"]
    interleave(entries, budget=1.0, turns=4, exact=True, between=lambda: calibrations.append(1))
    assert seen == list("ABBAABBA")
    assert [len(e.samples) for e in entries] == [4, 4] and [e.calls for e in entries] == [[1] * 4] * 2
    assert len(calibrations) == 4


def test_a_slow_entry_stops_once_its_budget_and_the_minimum_samples_are_spent():
    seen = []
    slow = Entry("slow", lambda s, e: (seen.append("slow"), [1.0])[1])
    quick = fake("quick", seen)
    interleave([slow, quick], budget=0.5, turns=20)
    assert len(slow.samples) == stats.MIN_SAMPLES and len(quick.samples) == 20


@pytest.mark.parametrize("a_cost, b_cost", [(1.0, 1.0), (1.0, 0.2), (0.2, 1.0), (0.12, 0.09)])
def test_paired_sides_stop_together_after_an_even_number_of_turns(a_cost, b_cost):
    """An A/B pair keeps as many turns with A first as with B first, however the two sides
    overshoot their budget: an A/A of the pairing must show nothing."""
    a = Entry(("a", "x"), lambda s, e: [a_cost])
    b = Entry(("b", "x"), lambda s, e: [b_cost])
    interleave([a, b], budget=0.5, turns=20, order=paired)
    assert len(a.samples) == len(b.samples) and len(a.samples) % 2 == 0
    assert len(a.samples) >= stats.MIN_SAMPLES


def test_a_failing_entry_is_recorded_and_the_others_go_on():
    seen = []

    def boom(seconds, exact):
        raise RuntimeError("exploded")

    broken, fine = Entry("broken", boom), fake("fine", seen)
    interleave([broken, fine], budget=1.0, turns=3, exact=True)
    assert isinstance(broken.error, RuntimeError) and broken.samples == []
    assert len(fine.samples) == 3


@pytest.mark.parametrize("order, turns", [(rotation, 12), (paired, 12)])
def test_no_position_bias(order, turns):
    """A/A of the interleaving itself: two identical entries, where going first in a turn costs
    50 % more (cold caches, a waking thread pool). Over the turns the penalty falls on both alike,
    so their samples agree exactly."""
    position = {"n": 0}
    entries = []

    def make(key):
        def slice_(seconds, exact):
            position["n"] += 1
            return [1.5 if position["n"] % 2 == 1 else 1.0]
        return Entry(key, slice_, CpuMeter())

    entries = [make("A"), make("B")]
    interleave(entries, budget=1.0, turns=turns, exact=True, order=order)
    a, b = entries
    assert sorted(a.samples) == sorted(b.samples)
    assert stats.typical(a.lows) == stats.typical(b.lows)


def test_summary_fields():
    seen = []
    entry = fake("A", seen, cost=lambda n: 0.001 * n)
    interleave([entry], budget=1.0, turns=5, exact=True)
    fields = entry.summary()
    assert fields["turns"] == fields["calls"] == 5 and fields["turn_medians_s"] == fields["turn_fastest_s"]
    assert fields["processes"] == 1 and fields["fastest_s"] == pytest.approx(0.001)
    assert fields["min_s"] == 0.001 and fields["median_s"] == pytest.approx(0.003)
    assert fields["noisy"] is True  # 0.001 to 0.005: IQR 0.002 on a median of 0.003


def test_every_slice_is_settled_first_outside_its_accounting():
    seen = []
    entries = [fake(k, seen) for k in "AB"]
    interleave(entries, budget=1.0, turns=3, exact=True, settle=lambda: seen.append("settle"))
    assert seen == ["settle", "A", "settle", "B", "settle", "B", "settle", "A", "settle", "A", "settle", "B"]
    assert all(e.meter.wall < 0.5 for e in entries)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fresh_inputs_are_equal_copies_at_varying_16_byte_offsets_within_a_page(dtype):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((2, 3, 5, 7)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    offsets = set()
    for _ in range(20):
        fresh = fresh_inputs(arrays)
        for key, a in arrays.items():
            copy = fresh[key]
            assert copy.flags.c_contiguous and copy.flags.writeable and copy.flags.aligned
            assert copy.dtype == a.dtype and copy.shape == a.shape and np.array_equal(copy, a)
            assert not np.shares_memory(copy, a)
            assert copy.ctypes.data % 16 == 0
            offsets.add(copy.ctypes.data % PAGE)
    assert len(offsets) > 20  # 40 draws of 256 offsets: all but impossible to repeat this much
