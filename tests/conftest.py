"""Hypothesis profiles: the default keeps the plain test run quick; `--hypothesis-profile thorough`
draws many more problems (minutes). Benchmarks run once as tests unless asked for, and auto's
tuning cache lives in a temporary directory for the session."""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile("default")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A plain `pytest` runs every benchmark once, as a test (pytest-benchmark's --benchmark-disable);
    `pytest --benchmark-only` (or --benchmark-enable) times them."""
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True
    # auto's tuning cache: one fresh file per test session (subprocesses inherit it), never the user's.
    config._tuning_dir = tempfile.mkdtemp(prefix="convbench-tuning-")
    os.environ["CONVBENCH_TUNING_CACHE"] = os.path.join(config._tuning_dir, "tuning.json")


def pytest_unconfigure(config):
    if hasattr(config, "_tuning_dir"):
        shutil.rmtree(config._tuning_dir, ignore_errors=True)
