"""convbench targets: each target's ratio from the rows given, met or not, and its files."""

from __future__ import annotations

import pandas as pd
import pytest

from convbench.bench.results import RunDirectory
from convbench.cli import main


def make_run(path, plan, rows):
    run = RunDirectory(path)
    run.create(plan)
    session = run.start_session({"cpu": "test"})
    for row in rows:
        run.append({"session": session, "status": "ok", "dtype": "float32", "threads": 2, **row})
    return path


def kernel(suite, problem, backend, seconds, direction="forward+backward", **extra):
    return {"suite": suite, "problem": problem, "op": "conv2d", "backend": backend,
            "direction": direction, "median_s": seconds, **extra}


def step(problem, backend, seconds, **extra):
    return {"suite": "step", "problem": problem, "op": "train_step", "backend": backend,
            "direction": "step", "median_s": seconds, **extra}


@pytest.fixture
def runs(tmp_path):
    kernels_run = make_run(tmp_path / "kernels", {"command": "run"}, [
        kernel("seeds", "seed002_conv", "im2col", 1e-3), kernel("seeds", "seed002_conv", "numba", 2e-3),
        kernel("seeds", "seed002_conv", "auto", 0.5e-3),  # auto never counts as ours: it repeats a pick
        kernel("seeds", "seed002_conv", "torch", 3e-3),
        kernel("seeds", "seed002_pool", "im2col", 1e-3), kernel("seeds", "seed002_pool", "torch", 9e-3),
        kernel("lenet5", "conv1", "im2col", 2e-3, N=64), kernel("lenet5", "conv1", "torch", 1e-3, N=64),
        kernel("lenet5", "conv1", "numba", 3e-3, N=64),
        kernel("lenet5", "conv1", "torch", 1e-5, N=1),  # another batch: never mixed into batch 64's targets
        # scipy's model time: the sum of its layers' medians x repeat, at batch 1 only
        kernel("resnet18", "conv1", "scipy", 0.3, N=1, repeat=1),
        kernel("resnet18", "layer1_conv", "scipy", 0.2, N=1, repeat=4),
        kernel("resnet18", "layer1_conv", "scipy", 9.0, N=8, repeat=4),
        kernel("resnet18", "layer1_conv", "im2col", 0.1, "forward", N=8, pct_of_peak=60.0),
        kernel("resnet18", "layer1_conv", "numba", 0.5, "forward", N=8, pct_of_peak=12.0),
        kernel("resnet18", "layer1_conv", "numba", 0.01, "forward", N=1, pct_of_peak=90.0),
    ])
    steps = make_run(tmp_path / "steps", {"command": "step", "backends": ["im2col", "torch"], "models": ["lenet5"]}, [
        step("lenet5-b64", "im2col", 11e-3, first_call_s=5.0), step("lenet5-b64", "torch", 10e-3),
    ])
    first = make_run(tmp_path / "first", {"command": "step", "backends": ["numba"], "models": ["lenet5"]}, [
        step("lenet5-b64", "numba", 0.2, first_call_s=1.5),
    ])
    return [kernels_run, steps, first]


def test_targets_give_each_ratio_and_verdict(runs, tmp_path, capsys):
    out = tmp_path / "targets"
    assert main(["targets", *map(str, runs), "--out", str(out)]) == 0
    table = pd.read_csv(out / "targets.csv")
    got = {(r.target.split(":")[0], r.problem): (r.fastest, round(r.value, 6), r.met) for r in table.itertuples()}
    assert got == {
        ("tiny", "seed002_conv"): ("im2col", round(1 / 3, 6), True),  # the pool is not a conv target
        ("small", "conv1"): ("im2col", 2.0, False),
        ("large forward", "layer1_conv"): ("im2col", 60.0, True),
        ("numba forward", "layer1_conv"): ("numba", 12.0, False),  # numba's own forward, against the peak
        ("numba fwd+bwd", "conv1"): ("numba", 3.0, False),  # numba's own fwd+bwd, against torch
        ("scipy model", "all 2 conv layers"): ("scipy", 1.1, True),
        ("step", "lenet5-b64"): ("im2col", 1.1, False),
        ("numba's first lenet5 step, fresh process, warm cache", "lenet5-b64"): ("numba", 1.5, False),
    }
    report = (out / "targets.md").read_text()
    assert "3 of 8 met" in report and "| **no** |" in report
    assert (out / "targets.png").read_bytes()[:4] == b"\x89PNG"
    assert "3 of 8 met" in capsys.readouterr().out


def test_targets_of_an_empty_directory_is_one_clear_line(tmp_path, capsys):
    assert main(["targets", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "holds no measurements.jsonl" in capsys.readouterr().err


def test_a_target_tried_but_not_timed_is_listed_as_not_measured(runs, tmp_path, capsys):
    """A target whose measurements were skipped (too slow for --max-time), wrong or failed is a row
    that says so and why, and the summary counts it apart: it does not silently drop out."""
    untimed = make_run(tmp_path / "untimed", {"command": "run"}, [
        kernel("seeds", "seed003_conv1", "im2col", None, status="skipped"),
        kernel("seeds", "seed003_conv1", "torch", 1e-3),
        kernel("seeds", "seed003_conv2", "numba", 1e-3),
        kernel("seeds", "seed003_conv2", "torch", None, status="error"),
        kernel("resnet18", "layer2_conv", "scipy", None, N=1, repeat=2, status="wrong"),  # the model lacks a layer
    ])
    out = tmp_path / "targets"
    assert main(["targets", *map(str, runs), str(untimed), "--out", str(out)]) == 0
    table = pd.read_csv(out / "targets.csv")
    missing = table[table.met.isna()]
    assert sorted(missing.problem) == ["all 3 conv layers", "seed003_conv1", "seed003_conv2"]
    assert missing.value.isna().all()
    report = (out / "targets.md").read_text()
    # the model lost its time: one of its 3 layers was not timed, so 2 of the 3 met before are left
    assert "2 of 7 met, 3 not measured" in report and "2 of 7 met, 3 not measured" in capsys.readouterr().out
    assert "not measured (im2col skipped)" in report and "not measured (torch error)" in report
    assert "not measured (scipy wrong)" in report
