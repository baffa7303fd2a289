"""pytest-benchmark: every backend on representative problems, forward and forward+backward.

`pytest --benchmark-only` times them, one table per problem; a plain `pytest` runs each once.
Every benchmarked result is checked against the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench_common import (
    PROBLEMS,
    assert_close,
    problem_id,
    record_calibration,
    rounds_policy,
    run,
)

import kernels
from convbench.bench.timing import usable_cores


@pytest.fixture(scope="module")
def references():
    cache = {}

    def reference(problem, arrays):
        if problem not in cache:
            as64 = {k: v.astype(np.float64) for k, v in arrays.items()}
            y, ctx = problem.forward(kernels.reference, as64)
            cache[problem] = (y, *problem.backward(kernels.reference, as64, ctx))
        return cache[problem]

    return reference


@pytest.mark.parametrize("direction", ["forward", "forward+backward"])
@pytest.mark.parametrize("item", PROBLEMS, ids=problem_id)
@pytest.mark.parametrize("backend", kernels.names())
def test_kernel(benchmark, backend, item, direction, references):
    suite, problem = item
    be = kernels.get(backend)
    rounds = rounds_policy(benchmark, backend, problem, direction)
    arrays = problem.inputs("float32")

    def call():
        y, ctx = problem.forward(be, arrays)
        return (y,) if direction == "forward" else (y, *problem.backward(be, arrays, ctx))

    call()  # warm-up outside the timing: numba compiles or loads its cache here
    benchmark.group = f"{problem.op}:{suite}/{problem.name}:{direction}"
    benchmark.extra_info.update(descriptor=problem.descriptor(), suite=suite, problem=problem.name, op=problem.op,
                                N=problem.N, repeat=problem.repeat, backend=backend, direction=direction,
                                dtype="float32", threads=usable_cores(), flops=problem.flops(direction),
                                intensity=problem.flops(direction) / problem.bytes_moved(direction, 4))
    record_calibration(benchmark)
    got = run(benchmark, call, rounds)
    assert_close(got, references(problem, arrays)[: len(got)])
    if benchmark.stats:  # timed (not a plain run): GFLOP/s from the median
        benchmark.extra_info["gflops"] = problem.flops(direction) / benchmark.stats.stats.median / 1e9
