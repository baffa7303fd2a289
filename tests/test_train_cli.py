"""The train and step commands, end to end on small real runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from killing import kill_when, lines
from test_data import write_split

import kernels
from convbench.bench import timing
from convbench.bench.interleave import timing_fields
from convbench.bench.results import RunDirectory, load_calibration, load_results, make_row
from convbench.cli import main
from convbench.cnn.step import PARTS, _merged, run_steps


def test_train_writes_json_csv_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "seed002", "--backend", "im2col", "--iterations", "40", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "train.json").read_text())
    assert {"model", "backend", "test_accuracy", "wall_s"} <= set(result)
    assert (result["model"], result["backend"], result["iterations"]) == ("seed002", "im2col", 40)
    assert 0 <= result["test_accuracy"] <= 1 and result["test_images"] == 1000
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    steps = pd.read_csv(out / "steps.csv")  # a curve of every step, even from a single epoch
    assert list(steps.columns) == ["step", "train_loss", "train_accuracy"] and list(steps.step) == list(range(1, 41))
    assert "curve" not in result
    assert "test accuracy" in capsys.readouterr().out


def test_training_on_auto_binds_each_kernel_layer_to_a_pick_made_in_the_step(tmp_path):
    write_split(tmp_path, "train", n=40)  # few images: auto tunes the evaluation's shapes too
    write_split(tmp_path, "t10k", n=20)
    assert main(["train", "--model", "seed002", "--backend", "auto", "--data-dir", str(tmp_path), "--iterations", "3",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    picks = json.loads((tmp_path / "run" / "train.json").read_text())["picks"]
    assert set(picks) == {"0", "2"}  # seed002's conv and max-pool
    assert {kernels.traits(name).contender for name in picks.values()} == {True}


def test_the_backend_can_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVBENCH_BACKEND", "stride_tricks")
    assert main(["train", "--model", "seed000", "--classes", "1,7", "--iterations", "20", "--quiet", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "train.json").read_text())["backend"] == "stride_tricks"


def test_train_reads_idx_folders(tmp_path):
    write_split(tmp_path, "train", n=40)
    write_split(tmp_path, "t10k", n=20)
    assert main(["train", "--model", "lenet5", "--backend", "numba", "--batch-size", "8", "--data-dir", str(tmp_path),
                 "--quiet", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "train.json").read_text())
    assert result["test_images"] == 20 and "40 for training and validation" in result["data"]


@pytest.mark.parametrize("args, status, message", [
    (["--backend", "cuda"], 2, "unknown backend 'cuda'"),
    (["--model", "lenet5", "--freeze-conv"], 2, "freezing a layer is seed000's option only"),
    (["--batch-size", "0"], 2, "argument --batch-size: must be between 1 and 2,147,483,647; got 0"),
    (["--classes", "1,12"], 2, "has no class 12"),
    (["--data-dir", "/nonexistent"], 2, "/nonexistent: no such folder (--data-dir)"),
    (["--holdout", "9000"], 2, "--holdout 9000: "),
])
def test_bad_train_arguments_are_one_clear_line(tmp_path, capsys, args, status, message):
    # no --quiet: the progress bar must not be drawn before the error (it starts at the first step)
    assert main(["train", "--model", "seed002", "--iterations", "5", *args, "--out", str(tmp_path)]) == status
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "step" not in err.split(message)[0]


def test_train_runs_without_arguments_into_a_fresh_default_folder(tmp_path, monkeypatch, capsys):
    """`convbench train` needs no --out; a second run does not clobber the first; --quiet prints
    only the result lines (no epoch lines, no bar)."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", "--model", "seed002", "--backend", "im2col", "--iterations", "8", "--quiet"]) == 0
    assert (tmp_path / "runs/train-seed002-im2col/train.json").exists()
    assert (tmp_path / "runs/train-seed002-im2col-2/train.json").exists()
    captured = capsys.readouterr()
    assert "epoch" not in captured.out + captured.err and captured.err == ""
    assert captured.out.count("test accuracy") == 2


def test_train_refuses_an_out_it_could_not_finish_in_before_training(tmp_path, capsys, monkeypatch):
    from convbench.cnn import train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    done = tmp_path / "done"
    done.mkdir()
    (done / "train.json").write_text("{}")
    for out, message in ((a_file, "is a file, not a folder"), (done, "already holds a train.json")):
        assert main(["train", "--model", "seed002", "--iterations", "5", "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (done / "train.json").read_text() == "{}"


def test_labels_the_model_cannot_tell_apart_are_refused(tmp_path, capsys):
    write_split(tmp_path, "train", n=40, labels=np.arange(40) % 10 + np.array([190] + [0] * 39))
    write_split(tmp_path, "t10k", n=20)
    assert main(["train", "--model", "lenet5", "--backend", "numba", "--data-dir", str(tmp_path), "--quiet",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "label is 190, but lenet5 tells 10 classes" in err and err.count("\n") == 1


def test_step_timing_rows_and_report(tmp_path, monkeypatch):
    monkeypatch.setitem(kernels._REGISTRY, "broken", "broken_backends")
    run = RunDirectory(tmp_path / "steps")
    run.create({"command": "step"})
    stages = []
    run_steps(run, [("lenet5", 4)], ["im2col", "numba", "broken"], threads=1, rounds=3, on_stage=stages.append)
    assert stages == ["lenet5-b4 on 1 thread(s)"]
    frame = load_results(run.path)
    assert len(frame) == 12 and set(frame.direction) == {"step", "forward", "backward", "update"}
    step = frame[(frame.direction == "step") & (frame.backend == "numba")].iloc[0]
    assert step.status == "ok" and step.calls == 3 and step.max_rel_err < 1e-4
    parts = frame[(frame.backend == "numba") & (frame.status == "ok")].set_index("direction").median_s
    # each part is timed (how the parts add up to the step is a measurement, with the machine's
    # noise in it, not something a test can hold on a busy machine)
    assert all(parts[d] > 0 for d in ("forward", "backward", "update", "step"))
    assert min(step.conv_s, step.pool_s, step.dense_s, step.other_s) >= 0 and step.conv_s > 0
    broken = frame[frame.backend == "broken"]
    assert set(broken.status) == {"error"} and "backward exploded" in broken.reason.iloc[0]
    assert main(["report", str(run.path)]) == 0
    assert (run.path / "plots" / "step-lenet5-b4-1t.png").exists()
    text = (run.path / "report.md").read_text()
    assert "## step (float32, 1 thread)" in text
    # no column or table of a step report is all '-' (no baseline, FLOPs, memory or picks for steps)
    for table in [t for t in text.split("\n\n") if t.startswith("|")]:
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
        for column in list(zip(*cells))[1:]:
            assert set(column) != {"-"}, table


@pytest.mark.subprocess
def test_steps_measured_in_processes_are_one_row_a_part_with_each_process_a_sample(tmp_path):
    run = RunDirectory(tmp_path / "steps")
    run.create({"command": "step"})
    stages = []
    run_steps(run, [("seed002", 4)], ["im2col", "numba"], threads=1, rounds=2, processes=2, on_stage=stages.append)
    assert stages == [f"seed002-b4 on 1 thread(s): process {k} of 2" for k in (1, 2)]
    rows = run.rows()
    assert sorted((r["backend"], r["direction"]) for r in rows) == sorted((b, p) for b in ("im2col", "numba") for p in PARTS)
    for row in rows:
        assert row["status"] == "ok" and row["processes"] == 2 and len(set(row["sessions"])) == 2, row
        assert [len(turns) for turns in row["turn_medians_s"]] == [1, 1]  # the 2 rounds shared out
    assert all(r["conv_s"] > 0 for r in rows if r["direction"] == "step")
    # each process's calibrations are its session's, so that compare can tell the machine's drift
    by_session = load_calibration(run.path, threads=1)
    assert sum(len(c) >= 2 for c in by_session) >= 2, by_session


def _process_row(median: float, **split) -> dict:
    return make_row("s", {"direction": "step", "backend": "numba"}, "ok", **timing_fields([[median]], [[median]], [[1]]),
                    contended=False, others_cores=0.0, load1=0.0, **split)


def test_a_step_measured_in_processes_takes_the_median_of_their_splits_and_none_where_one_has_none():
    split = lambda conv: {"conv_s": conv, "pool_s": 1.0, "dense_s": 2.0, "other_s": None}  # noqa: E731
    row = _merged([_process_row(m, **split(c)) for m, c in [(3.0, 0.5), (1.0, 0.1), (2.0, 0.3)]])
    assert row["processes"] == 3 and row["median_s"] == 2.0
    assert (row["conv_s"], row["pool_s"], row["dense_s"], row["other_s"]) == (0.3, 1.0, 2.0, None)
    alone = _process_row(1.0, **split(0.2))
    assert _merged([alone]) is alone


def test_step_command(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["step", "--model", "seed002", "--backends", "im2col", "--rounds", "2", "--quiet", "--out", str(out)]) == 0
    rows = RunDirectory(out).rows()
    assert [(r["problem"], r["direction"], r["status"]) for r in rows] == [
        ("seed002-b4", part, "ok") for part in ("step", "forward", "backward", "update")]
    assert main(["step", "--model", "seed002", "--backends", "im2col", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert np.isfinite(rows[0]["median_s"])


def test_a_step_estimated_over_max_time_is_skipped_with_the_estimate(tmp_path):
    """As `run` skips a slow call: naive's LeNet-5 step at batch 64 takes seconds, im2col's milliseconds."""
    out = tmp_path / "s"
    assert main(["step", "--model", "lenet5", "--backends", "naive,im2col", "--threads", "1", "--rounds", "1",
                 "--max-time", "0.5", "--quiet", "--out", str(out)]) == 0
    rows = {(r["backend"], r["direction"]): r for r in RunDirectory(out).rows()}
    naive, im2col = rows["naive", "step"], rows["im2col", "step"]
    assert {rows["naive", part]["status"] for part in ("step", "forward", "backward", "update")} == {"skipped"}
    assert naive["estimate_s"] > 0.5 and "over the 0.5 s limit (--max-time)" in naive["reason"]
    assert im2col["status"] == "ok"
    # any backend: here by its second step, over a limit nothing meets
    assert main(["step", "--model", "seed002", "--backends", "im2col", "--threads", "1", "--rounds", "1",
                 "--max-time", "1e-9", "--quiet", "--out", str(tmp_path / "t")]) == 1  # nothing measured
    row = RunDirectory(tmp_path / "t").rows()[0]
    assert row["status"] == "skipped" and "its second step" in row["reason"] and row["estimate_s"] > 1e-9


def test_step_resume_finishes_the_saved_plan_not_the_defaults(tmp_path, capsys):
    """An interrupted step run resumed with no options measures only what its plan named."""
    out = tmp_path / "s"
    assert main(["step", "--model", "seed002", "--backends", "im2col,numba", "--threads", "1", "--rounds", "2",
                 "--quiet", "--out", str(out)]) == 0
    run = RunDirectory(out)
    kept = [r for r in run.rows() if r["backend"] == "im2col"]  # as if killed before numba
    (out / "measurements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(["step", "--resume", "--quiet", "--out", str(out)]) == 0
    rows = run.rows()
    assert {(r["problem"], r["backend"], r["threads"]) for r in rows} == {("seed002-b4", "im2col", 1), ("seed002-b4", "numba", 1)}
    assert all(r["calls"] == 2 for r in rows if r["backend"] == "numba")
    assert main(["step", "--resume", "--quiet", "--out", str(tmp_path / "none")]) == 2
    assert "holds no step run to finish" in capsys.readouterr().err


@pytest.mark.skipif(timing.max_threads() < 2, reason="two thread counts need two cores")
def test_step_takes_a_list_of_thread_counts_as_run_does(tmp_path):
    out = tmp_path / "s"
    assert main(["step", "--model", "seed002", "--backends", "im2col", "--threads", "1,2", "--rounds", "1",
                 "--quiet", "--out", str(out)]) == 0
    rows = RunDirectory(out).rows()
    assert sorted({r["threads"] for r in rows}) == [1, 2] and len(rows) == 2 * 4
    assert len(RunDirectory(out).sessions()) == 2  # one session (its peaks) per thread count
    kept = [r for r in rows if r["threads"] == 1]  # as if killed after the first thread count
    (out / "measurements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(["step", "--resume", "--quiet", "--out", str(out)]) == 0
    assert sorted((r["threads"], r["direction"]) for r in RunDirectory(out).rows()) == sorted(
        (r["threads"], r["direction"]) for r in rows)


def test_step_resume_after_a_backends_rows_were_partly_written_keeps_each_row_once(tmp_path):
    out = tmp_path / "s"
    assert main(["step", "--model", "seed002", "--backends", "im2col,numba", "--threads", "1", "--rounds", "2",
                 "--quiet", "--out", str(out)]) == 0
    run = RunDirectory(out)
    rows = run.rows()
    kept = rows[:6]  # im2col's four rows and two of numba's, as if killed between them
    (out / "measurements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(["step", "--resume", "--quiet", "--out", str(out)]) == 0
    after = run.rows()
    assert after[:6] == kept
    keys = [(r["problem"], r["backend"], r["direction"]) for r in after]
    assert len(keys) == len(set(keys)) == 8


def test_step_backends_take_turns_in_a_rotating_order(monkeypatch):
    """Interleaved timing: every turn runs each backend's plain and instrumented step, and the
    first backend of a turn rotates, so drift during the run falls on every backend alike."""
    from convbench.cnn import step as step_module

    calls = []
    real = step_module._step_function

    def recording(backend, *args):
        step = real(backend, *args)
        return lambda instrumented=True: calls.append((backend, instrumented)) or step(instrumented)

    monkeypatch.setattr(step_module, "_step_function", recording)
    monkeypatch.setattr(step_module, "estimate_step_seconds", lambda *args, **kwargs: 0.0)  # its steps are not turns
    results = step_module.measure_steps(["im2col", "numba", "cuda"], "seed002", 4, "float32", budget=1.0, rounds=3)
    assert [r["status"] for r in results.values()] == ["ok", "ok", "error"]
    assert "unknown backend 'cuda'" in results["cuda"]["reason"]
    assert results["im2col"]["calls"] == results["numba"]["calls"] == 3
    timed = calls[2:]  # after each backend's warm-up step
    assert timed == [("im2col", False), ("im2col", True), ("numba", False), ("numba", True),
                     ("numba", False), ("numba", True), ("im2col", False), ("im2col", True),
                     ("im2col", False), ("im2col", True), ("numba", False), ("numba", True)]


def quick_config(**fields):
    from convbench.cnn.train import TrainConfig

    return TrainConfig(**{"model": "seed002", "backend": "im2col", "epochs": 3, "batch_size": 64, "holdout": 4000,
                          **fields})


def test_a_resumed_training_ends_as_the_uninterrupted_one(tmp_path):
    """(On one BLAS thread: beside the other xdist worker, a 2-thread BLAS pool on 2 cores waited on
    its preempted thread, and the three trainings took from 2 s to 27 s.)"""
    from threadpoolctl import threadpool_limits

    from convbench.cnn.train import train

    with threadpool_limits(limits=1):
        _resumed_as_whole(tmp_path, train)


def _resumed_as_whole(tmp_path, train):
    whole = train(quick_config(), checkpoint=tmp_path / "whole.npz")

    def stop_in_epoch_two(event):
        if event["event"] == "step" and event["step"] > 20:
            raise KeyboardInterrupt

    halted = tmp_path / "halted.npz"
    with pytest.raises(KeyboardInterrupt):
        train(quick_config(), stop_in_epoch_two, checkpoint=halted)
    resumed = train(quick_config(), checkpoint=halted, resume=True)
    assert resumed["history"] == whole["history"] and len(whole["history"]) == 3
    assert resumed["curve"] == whole["curve"] and len(whole["curve"]) == whole["iterations"]
    assert resumed["test_loss"] == whole["test_loss"]


@pytest.mark.kill
def test_train_killed_after_an_epoch_resumes_and_keeps_it(tmp_path):
    out = tmp_path / "t"
    kill_when(["train", "--model", "seed002", "--backend", "im2col", "--epochs", "3", "--batch-size", "64",
               "--quiet", "--out", str(out)],  # about 60 steps an epoch
              (out / "checkpoint.npz").exists)
    from convbench.cnn.train import load_checkpoint

    first = load_checkpoint(out / "checkpoint.npz")[0]["history"]
    assert main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "train.json").read_text())
    assert result["history"][: len(first)] == first and len(result["history"]) == 3
    assert not (out / "checkpoint.npz").exists()
    assert main(["train", "--resume", "--quiet", "--out", str(out)]) == 2  # nothing left to resume


@pytest.mark.kill
def test_step_killed_after_a_model_resumes_and_keeps_its_rows(tmp_path):
    out = tmp_path / "s"
    measurements = out / "measurements.jsonl"
    kill_when(["step", "--model", "seed002,seed000", "--backends", "im2col,numba", "--threads", "1", "--rounds", "3",
               "--quiet", "--out", str(out)], lambda: lines(measurements) >= 4, timeout=180)
    before = measurements.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    assert main(["step", "--resume", "--quiet", "--out", str(out)]) == 0
    after = measurements.read_bytes()
    assert after.startswith(complete)
    keys = [(r["problem"], r["backend"], r["direction"]) for r in RunDirectory(out).rows()]
    assert len(keys) == len(set(keys)) == 16
