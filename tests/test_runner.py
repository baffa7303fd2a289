"""The runner: real small runs, skips, wrong answers, errors, unavailable backends, resume after a kill."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import warnings
from dataclasses import asdict

import pytest
from cases import counted, rig_auto
from killing import kill_when, lines

import convbench
import kernels
from convbench.bench.machine import CALIBRATION_VERSION
from convbench.bench.results import MEASUREMENTS, RunDirectory, load_results
from convbench.bench.runner import Plan, Runner, row_key
from convbench.bench.runner import windows as runner_windows
from convbench.cli import main


def execute(tmp_path, **plan_fields) -> list[dict]:
    plan = Plan(**{"budget": 0.02, "threads": [1], **plan_fields})
    run = RunDirectory(tmp_path / "run")
    run.create(asdict(plan))
    Runner(plan, run).execute()
    return run.rows()


def test_a_small_real_run(tmp_path):
    rows = execute(tmp_path, suites=["lenet5"], match="conv1", backends=["im2col", "numba"], rounds=3)
    assert [(r["backend"], r["direction"]) for r in rows] == [
        (b, d) for b in ("im2col", "numba") for d in ("forward", "backward", "forward+backward")]
    for r in rows:
        assert r["status"] == "ok" and r["calls"] == 3
        assert r["gflops"] == pytest.approx(r["flops"] / r["median_s"] / 1e9)
        assert r["max_rel_err"] < 1e-4 and r["peak_mem_bytes"] > 0
    assert set(rows[0]["phases"]) == {"im2col", "gemm"}  # im2col's forward phases
    frame = convbench.load_results(tmp_path / "run")
    assert len(frame) == 6 and {"cpu", "numpy_version", "blas", "peaks"} <= set(frame.columns)


def test_rows_keep_raw_samples_and_the_machines_state(tmp_path):
    rows = execute(tmp_path, suites=["seeds"], match="seed001_(conv|pool)$", backends=["im2col", "stride_tricks"],
                   rounds=4)
    assert len(rows) == 12
    for r in rows:
        assert r["schema"] == 3 and r["turns"] == 4 and r["turn_calls"] == [[1, 1, 1, 1]] and r["processes"] == 1
        (medians,), (fastest,) = r["turn_medians_s"], r["turn_fastest_s"]
        assert len(medians) == len(fastest) == 4 and r["min_s"] == min(fastest)
        assert r["median_s"] == pytest.approx(sorted(medians)[1] / 2 + sorted(medians)[2] / 2)
        assert isinstance(r["contended"], bool) and r["others_cores"] >= 0 and r["cpu_per_wall"] >= 0
        assert r["calibration_s"] > 0
    calibrations = RunDirectory(tmp_path / "run").calibrations()
    # the 2 problems take turns in one window: one before it, one before each of its 4 turns, one at the end
    assert len(calibrations) == 1 + 4 + 1
    assert all(c["version"] == CALIBRATION_VERSION and c["threads"] == 1 and c["index_s"] > 0 for c in calibrations)


def test_the_backends_and_directions_of_a_problem_take_turns(tmp_path, monkeypatch):
    """Every call of a problem's group is logged: with 2 turns, each (backend, direction) is
    called once per turn, and the second turn starts one place further on."""
    import convbench.bench.runner as runner

    log = []
    original = runner.interleave

    def logged(entries, *args, **kwargs):
        for e in entries:
            e.slice = lambda s, x, key=(e.key[0].backend, e.key[1]), f=e.slice: (log.append(key), f(s, x))[1]
        return original(entries, *args, **kwargs)

    monkeypatch.setattr(runner, "interleave", logged)
    execute(tmp_path, suites=["seeds"], match="seed001_conv$", backends=["im2col", "stride_tricks"],
            directions=["forward", "backward"], rounds=2)
    first, second = log[:4], log[4:]
    assert first == [(b, d) for b in ("im2col", "stride_tricks") for d in ("forward", "backward")]
    assert second == first[1:] + first[:1]


def test_windows_of_problems_that_take_turns_together():
    three = {"forward": None, "backward": None, "forward+backward": None}
    groups = {(s, f"p{i}", "float32", t): {"im2col": list(three), "numba": list(three)}
              for i, (s, t) in enumerate([("a", 1)] * 5 + [("a", 2)] * 2)}
    cut = runner_windows(groups, budget=1.0, seconds=12.0)  # 6 entries of 1 s per group: 2 groups a window
    assert [[key[1] for key, _ in w] for w in cut] == [["p0", "p1"], ["p2", "p3"], ["p4"], ["p5", "p6"]]
    assert len(runner_windows(groups, budget=1.0, seconds=1.0)) == 7  # a group never splits


def test_slow_measurements_are_skipped_with_the_reason(tmp_path):
    rows = execute(tmp_path, suites=["resnet18"], match="layer1_conv", backends=["naive", "im2col"],
                   directions=["forward"], max_time=0.5)
    naive, im2col = rows
    assert naive["status"] == "skipped" and naive["estimate_s"] > 0.5
    assert "over the 0.5 s limit (--max-time)" in naive["reason"] and "probe" in naive["reason"]
    assert im2col["status"] == "ok" and im2col["estimate_s"] < 0.5


def test_a_problem_that_is_its_own_probe_is_estimated_by_its_own_calls(tmp_path):
    """ResNet-18's layer4 at batch 1: a 7x7 output, yet over a second per naive call."""
    rows = execute(tmp_path, suites=["resnet18"], match="layer4_conv_s2$", backends=["naive", "im2col"],
                   directions=["forward"], max_time=0.1)
    naive, im2col = rows
    assert naive["status"] == "skipped" and naive["estimate_s"] > 0.1
    assert im2col["status"] == "ok" and 0 < im2col["estimate_s"] < 0.1


def test_a_batch_of_outputs_smaller_than_the_probes_is_estimated_by_the_batch(tmp_path):
    """ResNet-18's layer4 at batch 8: one image's 7x7 output fits both probes, which coincide."""
    rows = execute(tmp_path, suites=["resnet18"], match="layer4_conv$", batch=8, backends=["naive", "im2col"],
                   directions=["forward"], max_time=0.5)
    naive, im2col = rows
    assert naive["status"] == "skipped" and naive["estimate_s"] > 0.5
    assert im2col["status"] == "ok" and 0 < im2col["estimate_s"] < 0.5


@pytest.mark.parametrize("backends, status", [("broken", 1), ("absent", 1), ("broken,im2col", 0)])
def test_a_run_that_measured_nothing_exits_1(tmp_path, monkeypatch, capsys, backends, status):
    monkeypatch.setitem(kernels._REGISTRY, "broken", "broken_backends")
    monkeypatch.setitem(kernels._REGISTRY, "absent", "no_such_module_anywhere")
    out = str(tmp_path / "run")
    assert main(["run", "--suite", "seeds", "--match", "seed002_conv", "--backends", backends, "--threads", "1",
                 "--rounds", "1", "--quiet", "--out", out]) == status
    assert ("nothing was measured" in capsys.readouterr().err) is (status == 1)


def test_wrong_answers_and_errors_are_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(kernels._REGISTRY, "broken", "broken_backends")
    monkeypatch.setitem(kernels._REGISTRY, "absent", "no_such_module_anywhere")
    rows = execute(tmp_path, suites=["seeds"], match="seed002", backends=["broken", "absent", "numba"], rounds=2)
    status = {(r["problem"], r["backend"], r["direction"]): r for r in rows}
    conv = status["seed002_conv", "broken", "forward"]
    assert conv["status"] == "error" and "RuntimeError in probe: backward exploded" in conv["reason"]
    wrong = execute(tmp_path / "again", suites=["seeds"], match="seed002_conv", backends=["broken"],
                    directions=["forward"], rounds=2)[0]
    assert wrong["status"] == "wrong" and "median_s" not in wrong
    assert wrong["max_rel_err"] > 1e-4 and "against kernels.reference" in wrong["reason"]
    absent = status["seed002_pool", "absent", "backward"]
    assert absent["status"] == "unavailable" and "no_such_module_anywhere" in absent["reason"]
    assert all(status[p, "numba", d]["status"] == "ok" for p in ("seed002_conv", "seed002_pool")
               for d in ("forward", "backward", "forward+backward"))


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "convbench", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.mark.kill
def test_resume_after_a_killed_run_loses_nothing(tmp_path):
    out = tmp_path / "run"
    measurements = out / MEASUREMENTS
    kill_when(["run", "--suite", "seeds", "--match", "seed00[12]", "--backends", "naive,im2col",
               "--directions", "forward", "--threads", "1", "--budget", "0.05", "--window", "0.1",
               "--out", str(out), "--quiet"],  # five windows, each written as it ends
              lambda: lines(measurements) >= 3)
    before = measurements.read_text()
    kept = len(before.splitlines())
    assert kept >= 3, "the run should have written rows before it was killed"

    done = run_cli("run", "--out", str(out), "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    after = measurements.read_text()
    assert after.startswith(before.rsplit("\n", 1)[0])  # every complete row is kept as it was
    rows = [json.loads(line) for line in after.splitlines()]
    plan = Plan(**json.loads((out / "plan.json").read_text()))
    assert sorted(map(row_key, rows)) == sorted(plan.keys())  # each measurement exactly once
    assert len(rows) > kept and len(RunDirectory(out).sessions()) == 2


def test_a_half_written_last_line_is_skipped_with_a_warning(tmp_path):
    execute(tmp_path, suites=["lenet5"], match="pool1", backends=["numba"], directions=["forward"], rounds=1)
    with open(tmp_path / "run" / MEASUREMENTS, "a") as f:
        f.write('{"session": "abc", "suite": "le')
    with pytest.warns(UserWarning, match="half-written last line"):
        assert len(load_results(tmp_path / "run")) == 1


@pytest.mark.parametrize("cut", [1, 40, 200])
def test_resume_after_a_torn_last_line_keeps_every_row_once(tmp_path, cut):
    """A kill in mid-write leaves a torn last line; resuming (twice) cuts it and appends whole
    lines after it, so report, compare and later resumes all read the file."""
    rows = execute(tmp_path, suites=["lenet5"], match="conv1|pool1", backends=["im2col"], rounds=1)
    assert len(rows) == 6
    measurements = tmp_path / "run" / MEASUREMENTS
    data = measurements.read_bytes()
    measurements.write_bytes(data[:-cut])
    whole = data[:-cut].rsplit(b"\n", 1)[0] + b"\n"  # the rows that were complete
    plan = Plan(**RunDirectory(tmp_path / "run").plan())
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torn line is announced once, then gone
            Runner(plan, RunDirectory(tmp_path / "run")).execute()
    after = measurements.read_bytes()
    assert after.startswith(whole)
    rows = [json.loads(line) for line in after.decode().splitlines()]
    assert sorted(map(row_key, rows)) == sorted(plan.keys())
    assert len(load_results(tmp_path / "run")) == 6


@pytest.mark.parametrize("tail, kept", [(b'{"a": 1', 0), (b'{"a": 1}', 1)])
def test_an_append_never_joins_a_torn_line(tmp_path, tail, kept):
    """The class behind the resume bug: every appender (rows, sessions, calibrations) goes
    through one function, which cuts a torn tail, or ends a whole record that lost its newline."""
    run = RunDirectory(tmp_path)
    run.create({})
    run.append({"first": True})
    with open(tmp_path / MEASUREMENTS, "ab") as f:
        f.write(tail)
    run.append({"last": True})
    lines = (tmp_path / MEASUREMENTS).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"first": True}, *[{"a": 1}] * kept, {"last": True}]


HOLD = ("import sys, time\nfrom filelock import FileLock\nlock = FileLock(sys.argv[1])\nlock.acquire()\n"
        "print('held', flush=True)\ntime.sleep(60)\n")


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["run", "step"])
def test_a_run_directory_has_one_writer(tmp_path, capsys, command):
    """A --resume started while another process still writes the run is refused at once."""
    out = tmp_path / "run"
    RunDirectory(out).create({"suites": ["lenet5"]} if command == "run" else {"command": "step"})
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([command, "--resume", "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is being written by another convbench process" in err and err.count("\n") == 1
        assert not (out / MEASUREMENTS).exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


@pytest.mark.parametrize("content", [
    "[1, 2]", "{", '"a string"', '{"suites": ["lenet5"], "bogus": 1}', '{"suites": ["lenet5"], "threads": "two"}',
    '{"backends": ["im2col"]}', '{"command": "step", "models": ["lenet5"]}', "x" * 1_000_000,
])
def test_a_damaged_plan_is_one_line_naming_it(tmp_path, capsys, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / "plan.json").write_text(content)
    assert main(["run", "--resume", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "plan.json" in err or "holds a `convbench step` run" in err
    assert err.count("\n") == 1 and len(err) < 500 and "Traceback" not in err


@pytest.mark.parametrize("bad", ["42", "null", '"text"', "[1]", "{nope", "\udcff garbage"])
@pytest.mark.parametrize("command", ["report", "resume"])
def test_a_damaged_measurements_line_is_one_line_naming_it(tmp_path, capsys, bad, command):
    execute(tmp_path, suites=["lenet5"], match="pool1", backends=["im2col"], directions=["forward"], rounds=1)
    measurements = tmp_path / "run" / MEASUREMENTS
    good = measurements.read_text()
    measurements.write_text(bad + "\n" + good, errors="surrogateescape")
    args = ["report", str(tmp_path / "run")] if command == "report" else ["run", "--resume", "--quiet", "--out",
                                                                          str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{MEASUREMENTS}:1: not a JSON" in err and err.count("\n") == 1


def test_a_suite_edited_before_a_resume_is_refused(tmp_path, capsys):
    suite = tmp_path / "mine.csv"
    header = "name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
    suite.write_text(header + "c1,conv2d,1,1,8,8,2,3,3,1,0,1,1,1\n")
    out = str(tmp_path / "run")
    assert main(["run", "--suite", str(suite), "--backends", "im2col", "--directions", "forward", "--threads", "1",
                 "--rounds", "1", "--quiet", "--out", out]) == 0
    suite.write_text(header + "c1,conv2d,1,1,9,9,2,3,3,1,0,1,1,1\n")  # same name, another shape
    assert main(["run", "--resume", "--quiet", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "the suites changed since this run was planned" in err and "/c1 was" in err


def test_the_cli_refuses_to_overwrite_or_mix_plans(tmp_path, capsys):
    execute(tmp_path, suites=["lenet5"], match="pool2", backends=["numba"], directions=["forward"], rounds=1)
    out = str(tmp_path / "run")
    assert main(["run", "--suite", "lenet5", "--out", out]) == 2
    assert "already holds a run; finish it with --resume" in capsys.readouterr().err
    assert main(["run", "--resume", "--suite", "lenet5", "--out", out]) == 2
    assert "drop --suite" in capsys.readouterr().err
    assert main(["run", "--resume", "--out", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("args, message", [
    (["--backends", "cuda"], f"argument --backends: must be among {', '.join(kernels.names() + kernels.yardsticks())}; got cuda"),
    (["--ops", "conv3d"], "argument --ops: must be among conv2d, maxpool2d, avgpool2d; got conv3d"),
    (["--threads", "two"], "argument --threads: takes comma-separated whole numbers; got 'two'"),
    (["--match", "zzz"], "no problem in seeds matches"),
    (["--budget", "0"], "argument --budget: must be > 0 and at most 86400 seconds; got 0"),
])
def test_bad_run_arguments_are_one_clear_line(tmp_path, capsys, args, message):
    assert main(["run", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_the_progress_callback_names_each_window_before_it_is_measured(tmp_path):
    from convbench.bench.results import RunDirectory
    from convbench.bench.runner import Plan, Runner

    plan = Plan(suites=["lenet5"], backends=["im2col"], directions=["forward"], threads=[1], rounds=1, window=1e-9)
    run = RunDirectory(tmp_path / "run")
    run.create({})
    seen = []
    Runner(plan, run, on_row=lambda row: seen.append(("row", row["problem"])),
           on_window=lambda label: seen.append(("window", label))).execute()
    windows = [label for kind, label in seen if kind == "window"]
    assert windows == [f"lenet5/{p}, float32, 1 thread" for p in ("conv1", "pool1", "conv2", "pool2")]
    assert seen.index(("window", windows[1])) > seen.index(("row", "conv1"))  # named before, rows after


def test_run_needs_no_out_but_resume_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--match", "seed000_conv$", "--backends", "im2col", "--directions", "forward",
                 "--rounds", "1", "--quiet"]) == 0
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("run-") and (made[0] / "measurements.jsonl").exists()
    assert main(["run", "--resume"]) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


def test_step_needs_no_out_but_resume_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["step", "--model", "seed002", "--backends", "im2col", "--threads", "1", "--rounds", "1", "--quiet"]) == 0
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("step-") and (made[0] / "measurements.jsonl").exists()
    assert main(["step", "--resume"]) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


def test_autos_rows_time_its_picks_own_calls_and_a_forward_row_the_fastest_forward(tmp_path, monkeypatch):
    """auto is bound once per row (``kernels.auto.bind``): its timed calls never go through its
    dispatch, and a forward row runs the pick timed on the forward pass alone."""
    from kernels import auto

    dispatched = []
    monkeypatch.setattr(auto, "conv2d_forward", functools.partial(counted, auto.conv2d_forward, dispatched))
    rig_auto(monkeypatch, {"forward+backward": "numba", "forward": "im2col"})
    monkeypatch.setenv("CONVBENCH_TUNING_CACHE", str(tmp_path / "tuning.json"))
    auto._forget()
    rows = execute(tmp_path, suites=["lenet5"], match="conv1", backends=["auto"], rounds=50)
    auto._forget()
    assert {r["direction"]: (r["status"], r["pick"]) for r in rows} == {
        "forward": ("ok", "im2col"), "backward": ("ok", "numba"), "forward+backward": ("ok", "numba")}
    # the probe's, the check's and the binds' calls, not the 3 x 50 timed ones
    assert len(dispatched) < 50 == min(r["calls"] for r in rows)
