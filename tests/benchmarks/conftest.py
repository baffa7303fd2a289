"""pytest-benchmark's timed kernels run with the allocator fixed as convbench run fixes it."""

import pytest

from convbench.bench.machine import steady_allocator


@pytest.fixture(scope="session", autouse=True)
def _steady_allocator():
    steady_allocator()
