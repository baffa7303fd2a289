"""Rows measured by several processes: the worker protocol, the merge, and a real run."""

from __future__ import annotations

import json

import pytest

from convbench.bench.child import Child, ChildError
from convbench.bench.executors import merge_rows
from convbench.bench.results import RunDirectory
from convbench.cli import main


def _row(session: str, fastest: list[float], status: str = "ok", **extra) -> dict:
    return {"session": session, "status": status, "suite": "seeds", "problem": "p", "backend": "im2col",
            "dtype": "float32", "threads": 1, "direction": "forward", "flops": 1e6, "peak_gflops": 10.0,
            "turn_medians_s": [[2 * t for t in fastest]], "turn_fastest_s": [fastest], "turn_calls": [[1] * len(fastest)],
            "contended": False, "others_cores": 0.1, "load1": 0.5, "cpu_per_wall": 1.0, "first_call_s": 0.1, **extra}


def test_merged_rows_keep_every_processes_samples_and_the_worst_contention():
    merged = merge_rows([_row("s1", [1.0, 1.1]), _row("s2", [2.0, 2.2], contended=True, others_cores=0.9),
                         _row("s3", [4.0, 4.4])])
    assert merged["processes"] == 3 and merged["turn_fastest_s"] == [[1.0, 1.1], [2.0, 2.2], [4.0, 4.4]]
    assert merged["turns"] == 6 and merged["calls"] == 6 and merged["min_s"] == 1.0
    assert merged["fastest_s"] == pytest.approx(2.0)  # geometric mean of each process's fastest call
    assert merged["contended"] is True and merged["others_cores"] == 0.9 and merged["sessions"] == ["s1", "s2", "s3"]
    assert merged["gflops"] == pytest.approx(1e6 / merged["median_s"] / 1e9)


def test_a_process_that_found_the_backend_wrong_decides_the_row():
    merged = merge_rows([_row("s1", [1.0]), _row("s2", [], status="wrong", reason="max relative error 1")])
    assert merged["status"] == "wrong" and merged["sessions"] == ["s1", "s2"]


@pytest.mark.subprocess
def test_a_child_answers_raises_and_prints_to_stderr_only(capfd):
    child = Child()
    try:
        assert child.call(print, "hi") is None  # a measuring process that prints does not garble the answers
        with pytest.raises(ValueError, match="invalid literal"):
            child.call(int, "x")
        assert child.call(str.upper, "again") == "AGAIN"
    finally:
        child.close()
    out, err = capfd.readouterr()
    assert "hi" in err and "hi" not in out


@pytest.mark.subprocess
def test_a_child_that_dies_is_a_clear_error():
    child = Child()
    child.process.kill()
    with pytest.raises(ChildError, match="ended with exit status"):
        child.call(str.upper, "hi")
    child.close()


@pytest.mark.subprocess
def test_a_run_in_three_processes_keeps_each_processes_samples_taken_in_turns(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--suite", "seeds", "--match", "^seed001_(conv|pool)$", "--backends", "im2col",
                 "--directions", "forward", "--threads", "1", "--rounds", "6", "--processes", "3",
                 "--out", str(out), "--quiet"]) == 0
    rows = RunDirectory(out).rows()
    sessions = [json.loads(line)["session"] for line in (out / "sessions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len(sessions) == 3
    for row in rows:
        assert row["processes"] == 3 and [len(p) for p in row["turn_fastest_s"]] == [2, 2, 2]
        assert sorted(row["sessions"]) == sorted(sessions) and row["max_rel_err"] < 1e-4
    calibrations = sorted(RunDirectory(out).calibrations(), key=lambda c: c["time"])
    assert {c["session"] for c in calibrations} == set(sessions)
    # the processes take turns: each readies the cell, then each takes one turn, then each again
    # (every turn calibrates first), rather than one process taking all of its turns at once
    order = [c["session"] for c in calibrations]
    assert [len(set(order[i:i + 3])) for i in range(0, 9, 3)] == [3, 3, 3]
    assert main(["compare", str(out), str(out)]) == 0  # three processes a side: a verdict can be given


def test_a_process_lets_its_pools_sleep_after_readying_a_cell_and_after_its_turns(monkeypatch):
    """The next process readies the cell next (auto tunes there) or takes its turn: a pool this
    one left spinning would take its cores (10 ms medians for 60 µs numba calls in auto's tuning)."""
    from convbench.bench import executors
    from convbench.bench.runner import Plan, Runner, windows

    plan = Plan(suites=["seeds"], backends=["im2col"], directions=["forward"], match="^seed001_pool$",
                threads=[1], rounds=2, processes=1)
    runner = Runner(plan, executors.Collector())
    cell, = windows(runner.groups(), plan.budget, plan.window)
    problems = {(s, p.name): p for s, p in plan.problems()}
    settled = []
    monkeypatch.setattr(executors, "quiesce", lambda: settled.append(len(executors._cell)))
    executors.start_cell(plan, cell, problems)
    assert settled == [len(executors._cell)]  # once the cell is ready, before any turn
    executors.cell_turns()
    assert len(settled) == 2
    assert [r["status"] for r in executors.end_cell()["rows"]] == ["ok"]
