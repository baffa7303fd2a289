"""Timing statistics, repeats, thread control and memory measurement."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from convbench.bench import timing


def test_statistics():
    t = timing.Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert (t.min, t.median, t.iqr) == (1.0, 3.0, 2.0)
    assert t.noisy
    assert not timing.Timing((1.0, 1.01, 1.02, 0.99)).noisy


def test_repeat_runs_exactly_the_rounds_asked_for():
    calls = []
    assert len(timing.repeat(lambda: calls.append(1), budget=100, calls=7).times) == 7 == len(calls)


def test_repeat_fills_the_budget_and_always_runs_once():
    assert len(timing.repeat(lambda: None, budget=0.01).times) > 10
    slow = timing.repeat(lambda: timing.time.sleep(0.02), budget=0.001)
    assert len(slow.times) == 1 and slow.median >= 0.02


def test_threads_are_set_and_restored():
    before = numba.get_num_threads()
    with timing.threads(1):
        assert numba.get_num_threads() == 1
        from threadpoolctl import threadpool_info
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert numba.get_num_threads() == before


@pytest.mark.skipif(timing.max_threads() < 2, reason="one core: BLAS has one thread anyway")
def test_one_pool_gives_blas_one_thread_beside_numba_only():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with timing.threads(2):
        for backend in ("numba", "auto"):  # numba's kernels have their own pool; auto may pick them
            with timing.one_pool(backend):
                assert blas_threads() == {1}
        with timing.one_pool("im2col"):  # im2col's GEMMs are BLAS's: its threads stay
            assert blas_threads() == {2}
        assert blas_threads() == {2}


def test_too_many_threads_is_a_clear_error():
    with pytest.raises(ValueError, match=r"threads must be between 1 and \d+ on this machine; got 999"):
        with timing.threads(999):
            pass


def test_peak_memory_sees_numpy_temporaries():
    assert timing.peak_memory(lambda: np.ones(2**20).sum()) >= 8 * 2**20
    assert timing.peak_memory(lambda: None) < 2**16
