"""Hypothesis profiles: the default keeps the plain test run quick; `--hypothesis-profile thorough`
draws many more problems (minutes). Benchmarks run once as tests unless asked for, and auto's
tuning cache lives in a temporary directory for the session."""

import functools
import os
import shutil
import sys
import tempfile

import pools
import pytest
from hypothesis import HealthCheck, settings

from convbench.bench import probes
from convbench.bench.runner import PROCESSES_ENV


settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile("default")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A plain `pytest` runs every benchmark once, as a test (pytest-benchmark's --benchmark-disable),
    on as many pytest-xdist workers as cores; `pytest --benchmark-only` (or --benchmark-enable)
    times them, in this one process (a benchmark shares the machine with nothing of ours)."""
    timing = config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)
    if timing:
        config.option.numprocesses, config.option.dist, config.option.tx = 0, "no", []
    else:
        config.option.benchmark_disable = True
    if hasattr(config, "workerinput"):  # an xdist worker: its controller's files, below
        for name in [n for n in os.environ if n.startswith("PYTEST_XDIST_")]:
            del os.environ[name]  # a pytest this worker starts is a session of its own, not a worker
        return
    # auto's tuning cache: one fresh file per test session (subprocesses and xdist workers inherit
    # it), never the user's.
    config._tuning_dir = tempfile.mkdtemp(prefix="convbench-tuning-")
    os.environ["CONVBENCH_TUNING_CACHE"] = os.path.join(config._tuning_dir, "tuning.json")
    # the machine's CPU description and peaks: probed once for the whole session (and its
    # subprocesses), not by each of its hundreds of small runs (convbench.bench.probes)
    os.environ[probes.ENV] = os.path.join(config._tuning_dir, "probes.json")
    for name, value in pools.SLEEPING.items():  # thread pools that sleep when done (tests/pools.py)
        os.environ.setdefault(name, value)
    # every row measured by this process alone, as the tests check what is written, not how fast;
    # the tests of the several-process path ask for --processes themselves
    os.environ.setdefault(PROCESSES_ENV, "1")


SLOW = ("docs", "asv", "cluster", "kill", "subprocess")


def pytest_collection_modifyitems(config, items):
    """Every test of a slow kind is also marked slow, and the slow ones run first, the docs'
    command blocks (the longest) first of all: xdist's workers start on them at once, and the
    many short tests fill in beside them instead of leaving one long test to run alone at the end."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: 0 if item.get_closest_marker("docs") else 1 if item.get_closest_marker("slow") else 2)


@pytest.fixture(autouse=True)
def _numba_threads_left_as_found():
    """A test that leaves numba's thread count changed (a worker's limits set in-process) changes
    what the next tests in its process measure and key auto's picks by: it fails here, by name."""
    numba = sys.modules.get("numba")
    before = numba.get_num_threads() if numba is not None else None
    yield
    numba = sys.modules.get("numba")
    if numba is not None:
        after = numba.get_num_threads()
        expected = numba.config.NUMBA_NUM_THREADS if before is None else before
        assert after == expected, f"the test left numba on {after} threads, not {expected}"


@pytest.fixture
def one_turn_tuning(monkeypatch):
    """auto tunes each new signature in one turn of one call per candidate: for the tests that check
    what auto's calls return, not which backend it picks (tests/test_auto.py and test_tune.py check
    the tuning). Over test_backends and test_properties, the full tuning was half their time."""
    from kernels import auto

    monkeypatch.setattr(auto, "MIN_TURNS", 1)
    monkeypatch.setattr(auto, "tune", functools.partial(auto.tune, turn_seconds=0, budget=0))


def pytest_unconfigure(config):
    if hasattr(config, "_tuning_dir"):
        shutil.rmtree(config._tuning_dir, ignore_errors=True)
