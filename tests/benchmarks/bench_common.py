"""Shared by the pytest-benchmark modules: problems from the suite catalogue, slow-call policy, checks."""

from __future__ import annotations

import pytest

import kernels
from convbench.bench.abworker import max_relative_error
from convbench.bench.machine import calibrate
from convbench.bench.runner import TOLERANCE, estimate_seconds
from convbench.bench.suites import load_suite
from convbench.bench.timing import usable_cores

ONE_ROUND_OVER = 0.2  # seconds per call: time a single round only
SKIP_OVER = 5.0  # seconds per call: too slow to benchmark here
# A plain test run runs each benchmark once and must stay quick; probing for an estimate would
# cost more than the calls. The two loop backends' costs have a known shape instead (naive runs
# one Python iteration per output element, scipy one correlate2d call per image-channel plane),
# declared by the backends (kernels.traits) with the size at which they are too slow to bother.

# A representative set from the catalogue the harness uses: seed shapes, every LeNet-5 layer,
# two ResNet-18 layers and one depthwise MobileNetV2 layer.
PICKS = {
    "seeds": ["seed000_conv", "seed002_conv", "seed002_pool", "seed003_conv2"],
    "lenet5": ["conv1", "pool1", "conv2", "pool2"],
    "resnet18": ["layer1_conv", "layer3_conv_s2", "avgpool"],
    "mobilenet_v2": ["block4_depthwise"],
}
PROBLEMS = [(suite, p) for suite, names in PICKS.items() for p in load_suite(suite) if p.name in names]


def problem_id(item) -> str:
    suite, problem = item
    return f"{suite}/{problem.name}"



def rounds_policy(benchmark, backend: str, problem, direction: str) -> int | None:
    """None: let pytest-benchmark calibrate; 1: a single round; or skip with the reason.

    A plain test run (benchmarks disabled: one call each) leaves the big loop-backend calls to
    ``pytest --benchmark-only``; those kernels are verified by the main test grid anyway.
    """
    if benchmark.disabled:
        if not problem.worth_timing(backend):
            pytest.skip(f"{backend}: too slow a call on {problem.name} to repeat in a plain test run; "
                        "left to `pytest --benchmark-only`")
        return None
    return seconds_policy(backend, estimate_seconds(kernels.get(backend), problem, "float32", [direction])[direction])


def seconds_policy(backend: str, seconds: float) -> int | None:
    if seconds < ONE_ROUND_OVER:
        return None
    if seconds > SKIP_OVER:
        pytest.skip(f"{backend}: estimated {seconds:.1f} s per call; over the {SKIP_OVER:g} s benchmark limit")
    return 1


def assert_close(got: tuple, expected: tuple) -> None:
    """Every output within the harness's float32 tolerance of the float64 reference."""
    assert [a is None for a in got] == [e is None for e in expected]
    assert max_relative_error(got, expected) <= TOLERANCE["float32"]


def record_calibration(benchmark) -> None:
    """The machine's speed just before a timed benchmark: `convbench compare` bounds by the
    calibration's swing between benchmarks what it may blame on the code."""
    if not benchmark.disabled:
        calibration = calibrate(usable_cores())
        benchmark.extra_info.update(calibration_s=calibration["index_s"], calibration_version=calibration["version"])


def run(benchmark, fn, rounds: int | None):
    if rounds is None:
        return benchmark(fn)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
