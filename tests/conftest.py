"""Hypothesis profiles: the default keeps the plain test run quick; `--hypothesis-profile thorough`
draws many more problems (minutes)."""

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
