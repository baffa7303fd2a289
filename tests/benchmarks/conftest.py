"""pytest-benchmark's timed kernels run with the allocator fixed as convbench run fixes it."""

import pytest

from convbench.bench.machine import steady_allocator


@pytest.fixture(scope="session", autouse=True)
def _steady_allocator():
    steady_allocator()


def pytest_benchmark_update_machine_info(config, machine_info):
    """convbench's machine metadata (machine name, BLAS, numpy/scipy/numba versions, commit) in the
    JSON's machine_info, where `convbench report` and `compare` read it."""
    from convbench.bench.results import machine_metadata

    machine_info["convbench"] = machine_metadata()
