"""pytest-benchmark: one full training step (forward, loss, backward, SGD update) per backend."""

from __future__ import annotations

import pytest
from bench_common import record_calibration, run, seconds_policy

import kernels
from convbench.bench.runner import TOLERANCE
from convbench.bench.suites import load_suite
from convbench.bench.timing import usable_cores
from convbench.cnn.layers import SGD
from convbench.cnn.models import build_model
from convbench.cnn.step import digits_batch, estimate_step_seconds, sgd_settings


# The model's conv and pooling layers, as problems of a suite: (suite, name prefix)
LAYERS = {"seed002": ("seeds", "seed002_"), "lenet5": ("lenet5", "")}


def step_rounds(benchmark, backend: str, model: str, batch: int) -> int | None:
    """As ``rounds_policy`` for a step. A plain test run (one call) leaves a step to
    `pytest --benchmark-only` where one of its layers is too slow a call for the backend (its
    declared cost: decided by shapes, never by a clock, so a busy machine cannot turn a pass into a
    skip); a benchmark run estimates as `convbench step --max-time` does."""
    if benchmark.disabled:
        suite, prefix = LAYERS[model]
        slow = [p.name for p in load_suite(suite) if p.name.startswith(prefix)
                and not p.with_batch(batch).worth_timing(backend)]
        if slow:
            pytest.skip(f"{backend}: too slow a call on {model}-b{batch}'s {slow[0]} to repeat in a plain "
                        "test run; left to `pytest --benchmark-only`")
        return None
    return seconds_policy(backend, estimate_step_seconds(backend, model, batch))


@pytest.mark.parametrize("model, batch", [("seed002", 4), ("lenet5", 64)], ids=["seed002-b4", "lenet5-b64"])
@pytest.mark.parametrize("backend", kernels.names())
def test_training_step(benchmark, backend, model, batch):
    x, y = digits_batch(model, batch, "float32")
    rounds = step_rounds(benchmark, backend, model, batch)
    expected = build_model(model, kernels.reference, seed=0, dtype="float64").train_step(
        x.astype("float64"), y, SGD(**sgd_settings(model)))[0]
    net, optimizer = build_model(model, kernels.get(backend), seed=0), SGD(**sgd_settings(model))
    first_loss = net.train_step(x, y, optimizer)[0]  # warm-up, and the check: the reference's first step
    assert abs(first_loss - expected) / expected <= TOLERANCE["float32"]
    benchmark.group = f"train_step:{model}-b{batch}"
    benchmark.extra_info.update(suite="step", problem=f"{model}-b{batch}", op="train_step", N=batch, repeat=1,
                                backend=backend, direction="step", dtype="float32", threads=usable_cores())
    record_calibration(benchmark)
    run(benchmark, lambda: net.train_step(x, y, optimizer), rounds)
