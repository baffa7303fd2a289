"""The optional PyTorch yardstick: unavailable with a reason where torch is absent, and, where it
is installed, checked against the reference like every backend (to a tolerance: oneDNN may pick
Winograd or other inexact algorithms, so integer inputs need not give exact float32 results)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from cases import (
    CONV_CASES,
    DTYPES,
    POOL_CASES,
    conv_expected,
    conv_inputs,
    pool_expected,
    pool_inputs,
)

import kernels

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_torch_is_a_yardstick_not_a_backend():
    assert kernels.yardsticks() == ("torch",) and "torch" not in kernels.names()
    reason = kernels.available(include_yardsticks=True)["torch"]
    if HAVE_TORCH:
        assert reason is None and kernels.get("torch").name == "torch"
    else:
        assert "torch" in reason
        with pytest.raises(kernels.BackendUnavailable, match="backend 'torch' is unavailable"):
            kernels.get("torch")


def close(actual, expected, dtype):
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(1.0, float(np.abs(expected).max())))


needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is an optional yardstick and is not installed")


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_torch_conv2d(case, dtype):
    be = kernels.get("torch")
    x, w, b, dy = conv_inputs(case, dtype)
    y, ctx = be.conv2d_forward(x, w, b, **case.params)
    got = (y, *be.conv2d_backward(dy, ctx))
    for a, e in zip(got, conv_expected(case, dtype)):
        assert (a is None) == (e is None)
        if e is not None:
            close(a, e, dtype)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_torch_pool(op, case, dtype):
    be = kernels.get("torch")
    x, dy = pool_inputs(case, op, dtype)
    y, ctx = getattr(be, f"{op}_forward")(x, case.kernel_size, **case.params)
    y_ref, dx_ref = pool_expected(case, op, dtype)
    close(y, y_ref, dtype)
    close(getattr(be, f"{op}_backward")(dy, ctx), dx_ref, dtype)


@needs_torch
@pytest.mark.parametrize("model", ["seed000", "seed002", "lenet5"])
def test_torch_step_is_the_same_network(model):
    """The native PyTorch network starts from our weights: its first loss is the reference's."""
    from convbench.cnn.step import measure_step

    result = measure_step("torch", model, 4, "float32", budget=0.01, rounds=2)
    assert result["status"] == "ok" and result["max_rel_err"] < 1e-5


@needs_torch
def test_torch_step_rows_are_written_without_a_split_by_layer(tmp_path):
    """convbench step with torch writes its rows: PyTorch's step has no per-kind split (None)."""
    from convbench.bench.results import RunDirectory
    from convbench.cnn.step import run_steps

    run = RunDirectory(tmp_path / "run")
    run.create({"command": "step"})
    run_steps(run, [("seed002", 4)], ["numba", "torch"], threads=1, rounds=1)
    steps = {r["backend"]: r for r in run.rows() if r["direction"] == "step"}
    assert steps["torch"]["status"] == "ok" and steps["torch"]["conv_s"] is None
    assert steps["numba"]["status"] == "ok" and steps["numba"]["conv_s"] > 0
