"""`convbench ab` on a tiny repository with two commits: each revision measured by its own worker,
from its own worktree, in turns; the worktrees are gone afterwards."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import kernels
from convbench.bench.machine import ALLOCATOR_ENV
from convbench.cli import main

pytestmark = [pytest.mark.skipif(shutil.which("git") is None, reason="convbench ab needs git"), pytest.mark.subprocess]

WRONG_FORWARD = '''

_conv2d_forward = conv2d_forward


def conv2d_forward(*args, **kwargs):  # a commit that breaks the forward pass
    y, ctx = _conv2d_forward(*args, **kwargs)
    return y + 1, ctx
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """kernels/ at two commits, and a third whose im2col forward is wrong."""
    path = tmp_path_factory.mktemp("repo")
    shutil.copytree(Path(kernels.__file__).parent, path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    (path / "NOTES").write_text("nothing that changes the kernels\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "second")
    with open(path / "kernels" / "im2col.py", "a") as f:
        f.write(WRONG_FORWARD)
    git(path, "commit", "-q", "-am", "third: wrong")
    return path


def rows(out: Path, side: str) -> list[dict]:
    return [json.loads(line) for line in (out / side / "measurements.jsonl").read_text().splitlines()]


ARGS = ["--suite", "seeds", "--match", "^seed001_conv$", "--backends", "im2col,stride_tricks",
        "--directions", "forward", "--threads", "1", "--turns", "5", "--budget", "0.05"]


def test_two_commits_measured_in_turns(repo, tmp_path, capsys, monkeypatch):
    from convbench.bench import ab

    settled = []
    monkeypatch.setattr(ab, "quiesce", lambda pids: settled.append(pids) or 0.0)
    out = tmp_path / "ab"
    assert main(["ab", "HEAD~2", "HEAD~1", "--repo", str(repo), "--out", str(out), "--quiet", *ARGS]) in (0, 1)
    report = capsys.readouterr().out
    assert "2 measurements compared" in report and "machine speed: steady" in report
    a, b = rows(out, "a"), rows(out, "b")
    assert [r["status"] for r in a + b] == ["ok"] * 4
    assert all(r["turns"] == 6 for r in a + b)  # 5 turns rounded up to an even count: A first as often as B
    # before every slice and every setup (auto tunes there), both workers' threads asleep: one
    # revision's spinning pool would take the cores from the other's turn (tiny numba calls took a
    # 20 ms scheduler slice, not 50 µs): 2 backends x 2 sides x (6 turns + 1 setup)
    assert len(settled) == 2 * 2 * (6 + 1) and all(len(set(pids)) == 2 for pids in settled)
    commits = [git(repo, "rev-parse", rev) for rev in ("HEAD~2", "HEAD~1")]
    for side, commit in zip("ab", commits):
        session = json.loads((out / side / "sessions.jsonl").read_text().splitlines()[0])
        assert session["git_commit"] == commit
        assert session["allocator"] == ALLOCATOR_ENV  # every worker's malloc is fixed alike
    # the two sides share one calibration timeline: the machine's drift cancels
    timelines = [[json.loads(line)["index_s"] for line in (out / side / "calibration.jsonl").read_text().splitlines()]
                 for side in "ab"]
    assert timelines[0] == timelines[1] and len(timelines[0]) == 1 + 6 + 1
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktrees are gone


def test_each_revision_runs_its_own_kernels(repo, tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(["ab", "HEAD~1", "HEAD", "--repo", str(repo), "--out", str(out), "--quiet", *ARGS]) == 1
    assert "ok -> wrong (REGRESSION)" in capsys.readouterr().out
    a, b = rows(out, "a"), rows(out, "b")
    assert {r["backend"]: r["status"] for r in a} == {"im2col": "ok", "stride_tricks": "ok"}
    assert {r["backend"]: r["status"] for r in b} == {"im2col": "wrong", "stride_tricks": "ok"}


@pytest.mark.parametrize("args, message", [
    (["nonsense", "HEAD"], "'nonsense' is not a commit"),
    (["HEAD", "HEAD", "--threshold", "nan"], "argument --threshold: must be a finite number; got nan"),
    (["HEAD", "HEAD", "--backends", "nope"], "argument --backends: must be among"),
])
def test_bad_input_is_one_line_and_exit_2(repo, tmp_path, capsys, args, message):
    assert main(["ab", *args, "--repo", str(repo), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_several_processes_per_side_are_one_row_each_with_their_samples(repo, tmp_path, capsys):
    """--processes 2: two pairs of workers, one after the other, each its share of the turns; a
    row per measurement keeps both processes' samples, names both sessions, and the calibration
    timeline is still shared by both sides."""
    out = tmp_path / "ab"
    assert main(["ab", "HEAD~2", "HEAD~1", "--repo", str(repo), "--out", str(out), "--quiet", *ARGS,
                 "--processes", "2"]) == 0
    for side in "ab":
        (row, *_) = rows(out, side)
        assert row["processes"] == 2 and [len(p) for p in row["turn_fastest_s"]] == [4, 4]  # ceil(5/2), made even
        sessions = [json.loads(line) for line in (out / side / "sessions.jsonl").read_text().splitlines()]
        assert sorted(row["sessions"]) == sorted(s["session"] for s in sessions) and len(sessions) == 2
        assert len({s["worker"] for s in sessions}) == 2
    assert (out / "worker-a2.log").exists() and (out / "worker-b2.log").exists()
    assert "2 process(es) on a side" not in capsys.readouterr().out  # a same needs no third


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """kernels/ and convbench/ at two commits; the second's im2col forward is wrong, and its
    network code says so on the worker's stderr when imported."""
    path = tmp_path_factory.mktemp("project")
    for package in ("kernels", "convbench"):
        source = Path(__import__(package).__file__).parent
        shutil.copytree(source, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    with open(path / "kernels" / "im2col.py", "a") as f:
        f.write(WRONG_FORWARD)
    with open(path / "convbench" / "cnn" / "step.py", "a") as f:
        f.write("\nprint('the second commit network code', file=__import__('sys').stderr)\n")
    git(path, "commit", "-q", "-am", "second: wrong im2col")
    return path


STEP_ARGS = ["--model", "lenet5", "--batch", "4", "--backends", "im2col,stride_tricks", "--threads", "1",
             "--turns", "4", "--budget", "0.05"]


def test_training_steps_of_two_commits_each_with_its_own_network_and_kernels(project, tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(["ab", "HEAD~1", "HEAD", "--repo", str(project), "--out", str(out), "--quiet", *STEP_ARGS]) == 1
    assert "ok -> wrong (REGRESSION)" in capsys.readouterr().out
    a, b = rows(out, "a"), rows(out, "b")
    assert {(r["problem"], r["direction"], r["backend"], r["status"]) for r in a} == {
        ("lenet5-b4", "step", "im2col", "ok"), ("lenet5-b4", "step", "stride_tricks", "ok")}
    assert {r["backend"]: r["status"] for r in b} == {"im2col": "wrong", "stride_tricks": "ok"}
    assert all(r["turns"] == 4 and r["suite"] == "step" for r in a)
    assert "the second commit network code" in (out / "worker-b.log").read_text()
    assert "the second commit network code" not in (out / "worker-a.log").read_text()


def test_an_ab_of_steps_reads_like_a_step_run(project, tmp_path, capsys):
    """ab's step rows compare with `convbench step`'s: same suite, problem and direction."""
    out = tmp_path / "ab"
    assert main(["ab", "HEAD~1", "HEAD~1", "--repo", str(project), "--out", str(out), "--quiet", *STEP_ARGS]) == 0
    assert "2 measurements compared" in capsys.readouterr().out
    step = tmp_path / "step"
    assert main(["step", "--model", "lenet5", "--batch-size", "4", "--backends", "im2col", "--threads", "1",
                 "--rounds", "3", "--out", str(step), "--quiet"]) == 0
    mine = {(r["suite"], r["problem"], r["direction"]) for r in rows(step.parent, step.name)}
    assert ("step", "lenet5-b4", "step") in mine
    assert {(r["suite"], r["problem"], r["direction"]) for r in rows(out, "a")} <= mine


@pytest.mark.parametrize("option", [["--suite", "seeds"], ["--directions", "forward"], ["--match", "conv"],
                                    ["--ops", "conv2d"]])
def test_model_refuses_the_options_that_choose_layers(project, tmp_path, capsys, option):
    assert main(["ab", "HEAD", "HEAD", "--repo", str(project), "--out", str(tmp_path / "x"), "--model", "lenet5",
                 *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} choose layers" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_a_step_call_leaves_the_thread_pool_context_to_its_slice(monkeypatch):
    """ab's worker enters ``pool()`` once around a slice of calls: threadpoolctl's limits cost
    1.4 ms to enter (numba's steps), which inside every timed call would be timed too."""
    from convbench.bench import timing
    from convbench.cnn import step

    result = step.step_call("lenet5", "im2col", 2, "float32")
    entered = []
    monkeypatch.setattr(timing, "one_pool", lambda backend: entered.append(backend))
    for _ in range(3):
        result["call"]()
    assert result["status"] == "ok" and entered == []
    result["pool"]()
    assert entered == ["im2col"]


@pytest.fixture
def worker_threads():
    """abworker's thread limits, which a worker keeps for the life of its process, undone after
    the test: the test process goes on with its own (tests/conftest.py checks that it does)."""
    import numba
    from threadpoolctl import threadpool_limits

    from convbench.bench import abworker

    numba_before, blas_before = numba.get_num_threads(), threadpool_limits(limits=None)
    yield abworker._Threads()
    numba.set_num_threads(numba_before)
    blas_before.restore_original_limits()


def test_a_first_call_slowed_by_compiling_is_timed_again_before_it_can_skip_a_row(monkeypatch, worker_threads):
    """A fresh worktree's numba compiles on the first call (10 s for a kernel's new signature,
    seen here): the worker times a second call before --max-time may call the row too slow."""
    from dataclasses import asdict

    from convbench.bench import abworker
    from convbench.bench.suites import load_suite

    be = kernels.get("im2col")
    calls, clock = [], iter([0.0, 30.0, 100.0, 100.5, 200.0, 200.5])  # first call 30 s, then 0.5 s
    original = be.conv2d_forward
    monkeypatch.setattr(be, "conv2d_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(abworker.time, "perf_counter", lambda: next(clock))
    problem = asdict(next(p for p in load_suite("seeds") if p.name == "seed001_conv"))
    request = {"id": 1, "problem": problem, "backend": "im2col", "dtype": "float32", "threads": 1,
               "direction": "forward", "seed": 0, "max_time": 10.0}
    answer = abworker._setup(request, {}, worker_threads)
    assert answer["ok"] and answer["first_s"] == 0.5 and len(calls) == 2
    request["max_time"] = 100.0  # a first call within --max-time is not repeated
    answer = abworker._setup({**request, "id": 2}, {}, worker_threads)
    assert answer["first_s"] == 0.5 and len(calls) == 3


def test_a_first_step_slowed_by_compiling_is_judged_by_the_second(monkeypatch):
    from convbench.bench import abworker
    from convbench.cnn import step

    answer = {"status": "ok", "call": lambda: None, "pool": lambda: None, "max_rel_err": 0.0, "first_call_s": 30.0}
    monkeypatch.setattr(step, "step_call", lambda *args: {**answer, "estimate_s": 0.5})
    request = {"id": 1, "step": {"model": "lenet5", "batch": 64}, "backend": "numba", "dtype": "float32",
               "seed": 0, "max_time": 10.0, "threads": 1}
    assert abworker._setup_step(request, {})["first_s"] == 0.5
    monkeypatch.setattr(step, "step_call", lambda *args: {**answer, "first_call_s": 0.2, "estimate_s": None})
    assert abworker._setup_step(request, {})["first_s"] == 0.2


class _FakeWorker:
    """A worker that answers at once and logs, by name, every slice it is asked for."""

    def __init__(self, name: str, log: list[str], process):
        self.name, self.log, self.process, self.ids = name, log, process, 0

    def next_id(self) -> int:
        self.ids += 1
        return self.ids

    def ask(self, request: dict) -> dict:
        if request["op"] == "setup":
            return {"ok": True, "max_rel_err": 0.0, "first_s": 1e-4}
        self.log.append(self.name)
        return {"ok": True, "times": [1e-4]}


def test_the_pairs_of_workers_take_each_turn_together(tmp_path):
    """Within every turn each pair takes its slices, one pair after the other: a state of the
    machine lasting seconds then falls on every pair alike, not on one pair's whole share."""
    from convbench.bench.ab import Layer, _measure_group
    from convbench.bench.results import RunDirectory
    from convbench.bench.runner import Plan

    plan = Plan(["seeds"], backends=["im2col"], directions=["forward"], rounds=4, processes=2, match="^seed000_conv$")
    (suite, problem), = plan.problems()
    sleeper = subprocess.Popen(["sleep", "60"])  # the workers' pid: a process whose threads sleep
    try:
        log: list[str] = []
        pairs = [[_FakeWorker(f"{side}{n}", log, sleeper) for side in "ab"] for n in (1, 2)]
        runs = [RunDirectory(tmp_path / side) for side in "ab"]
        for run in runs:
            run.create({"command": "ab"})
        sessions = [[run.start_session({}) for run in runs] for _ in pairs]
        rows = _measure_group(plan, pairs, runs, sessions, suite, Layer(problem), "float32", 1)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert len(rows) == 4 and all(row["status"] == "ok" for _, row in rows)
    assert log == ["a1", "b1", "a2", "b2", "b2", "a2", "b1", "a1"]  # turn 0, then turn 1 in the other order


def test_each_revision_s_workers_share_a_tuning_cache_of_their_own(tmp_path, monkeypatch):
    """In one shared file each revision's auto picks replaced the other's (their code identities
    differ), so every worker tuned afresh and the workers of a side picked differently."""
    import io

    from convbench.bench import ab

    started = []

    class FakeProcess:
        def __init__(self, args, env, **kwargs):
            started.append(env["CONVBENCH_TUNING_CACHE"])
            self.stdout, self.stdin = io.StringIO('{"ok": true}\n'), io.StringIO()

        def poll(self):
            return 0

    monkeypatch.setattr(ab.subprocess, "Popen", FakeProcess)
    with ab._pairs([tmp_path / "a", tmp_path / "b"], tmp_path, 2) as pairs:
        assert len(pairs) == 2
    assert started == [str(tmp_path / f"tuning-{side}.json") for _ in range(2) for side in "ab"]
