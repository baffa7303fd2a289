"""Report and compare on a small real run."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pandas as pd
import pytest

from convbench.bench import stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from untimed import not_timed

from convbench.bench.machine import CALIBRATION_VERSION
from convbench.bench.report import _shown_pick, picks_table
from convbench.bench.results import MEASUREMENTS, RunDirectory
from convbench.bench.runner import Plan, Runner
from convbench.cli import main


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "small"
    plan = Plan(suites=["lenet5"], backends=["naive", "im2col", "stride_tricks", "auto"], threads=[1], rounds=5)
    run = RunDirectory(path)
    run.create(asdict(plan))
    Runner(plan, run).execute()
    return path


def test_report_writes_tables_and_plots(small_run, capsys):
    assert main(["report", str(small_run)]) == 0
    report = (small_run / "report.md").read_text()
    assert "## lenet5 (float32, 1 thread)" in report and "### forward+backward" in report
    assert "| winner " in report and "speedup over naive (geomean)" in report
    for backend in ("naive", "im2col", "stride_tricks", "auto"):
        assert f"| {backend} " in report
    # auto is reported with its picks and overhead, and never counts as a winner
    assert "auto's picks (timed on first sight) and its overhead" in report and "| auto / pick " in report
    winners = [line for line in report.splitlines() if line.startswith("| winner ")]
    assert winners and not any("auto" in line for line in winners)
    pngs = sorted(p.name for p in (small_run / "plots").iterdir())
    assert pngs == ["gflops-lenet5-float32-1t.png", "phases-lenet5-float32-1t.png",
                    "roofline-1t.png", "speedup-lenet5-float32-1t.png"]
    assert all((small_run / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_compare_a_run_with_itself_finds_no_regression(small_run, capsys):
    assert main(["compare", str(small_run), str(small_run)]) == 0
    out = capsys.readouterr().out
    assert "48 measurements compared: " in out and "; 0 regression(s) beyond 10%" in out
    assert "slower" not in out and "faster" not in out  # same, or inconclusive where the run was contended


def test_compare_flags_a_slowdown_beyond_noise(small_run, tmp_path, capsys):
    base, slower = tmp_path / "base", tmp_path / "slower"
    shutil.copytree(small_run, base)
    rows = [three_processes({**json.loads(line), "contended": False})  # as on a quiet machine
            for line in (base / MEASUREMENTS).read_text().splitlines()]
    (base / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copytree(base, slower)
    small_run = base
    for row in rows:  # make im2col's forward three times slower, as a regression would
        if row["backend"] == "im2col" and row["direction"] == "forward":
            slow_down(row, 3)
    (slower / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["compare", str(small_run), str(slower), "--threshold", "0.5"]) == 1
    captured = capsys.readouterr()
    assert "4 regression(s) beyond 50%" in captured.out and "slower (REGRESSION)" in captured.out
    assert "4 measurement(s) significantly slower by more than 50%" in captured.err
    assert main(["compare", str(slower), str(small_run)]) == 0  # faster is fine
    assert "4 faster" in capsys.readouterr().out


@pytest.mark.parametrize("machine_slowed_on, regressions", [(1, 0), (2, 4)])
def test_compare_tells_a_slower_machine_from_slower_code_on_the_rows_threads(
        small_run, tmp_path, capsys, machine_slowed_on, regressions):
    """The calibration measured on the rows' thread count, and of this workload's version, is the
    machine's drift: when it slowed 3x as much as the code did, the code is not blamed."""
    base, slower = tmp_path / "base", tmp_path / "slower"
    shutil.copytree(small_run, base)
    rows = [three_processes({**json.loads(line), "contended": False})
            for line in (base / MEASUREMENTS).read_text().splitlines()]
    (base / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copytree(base, slower)
    for row in rows:
        if row["backend"] == "im2col" and row["direction"] == "forward":
            slow_down(row, 3)
    (slower / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))

    def calibrations(slowed: int | None) -> str:
        lines = [{"version": CALIBRATION_VERSION, "threads": t, "index_s": (3.0 if t == slowed else 1.0) * (1 + i / 100),
                  "session": f"process-{i % 3}"} for t in (1, 2) for i in range(12)]  # three processes' calibrations
        lines += [{"version": CALIBRATION_VERSION - 1, "index_s": 9.0 if slowed else 1.0} for _ in range(10)]
        return "".join(json.dumps(c) + "\n" for c in lines)
    (base / "calibration.jsonl").write_text(calibrations(None))
    (slower / "calibration.jsonl").write_text(calibrations(machine_slowed_on))
    assert main(["compare", str(base), str(slower), "--threshold", "0.5"]) == (1 if regressions else 0)
    out = capsys.readouterr().out
    assert f"; {regressions} regression(s) beyond 50%" in out
    assert ("machine speed: CHANGED" in out) is (machine_slowed_on == 1)


def three_processes(row: dict) -> dict:
    """A row measured by one process as if three had measured it, each within 0.2 % of it."""
    if row.get("status") != "ok":
        return row
    for key in ("turn_medians_s", "turn_fastest_s", "turn_calls"):
        one = row[key][0]
        row[key] = [one if key == "turn_calls" else [t * (1 + i / 500) for t in one] for i in range(3)]
    row["processes"] = 3
    row["fastest_s"] = stats.typical(row["turn_fastest_s"])
    return row


def slow_down(row: dict, factor: float) -> None:
    """A row made ``factor`` times slower, every sample of every process."""
    for key in ("median_s", "min_s", "fastest_s"):
        row[key] *= factor
    for key in ("turn_medians_s", "turn_fastest_s"):
        row[key] = [[factor * t for t in process] for process in row[key]]


def _benchmark_file(path, slowdown: float, swing: float):
    """A pytest-benchmark file of 8 benchmarks (each timed in one stretch of 50 calls, after a
    calibration that swings by ``swing`` between benchmarks); the first is ``slowdown`` x slower."""
    benchmarks = []
    for i in range(8):
        base = 1e-3 * (1 + i) * (slowdown if i == 0 else 1.0)
        data = [base * (1 + (j % 5) / 100) for j in range(50)]
        benchmarks.append({"fullname": f"test_kernel[{i}]", "stats": {
            "median": sorted(data)[25], "iqr": base * 0.02, "min": min(data), "rounds": 50, "data": data},
            "extra_info": {"suite": "seeds", "problem": f"p{i}", "backend": "im2col", "direction": "forward",
                           "dtype": "float32", "threads": 2, "calibration_version": CALIBRATION_VERSION,
                           "calibration_s": 1e-3 * (swing if i % 2 else 1.0)}})
    path.write_text(json.dumps({"benchmarks": benchmarks, "machine_info": {"cpu": {"count": 2}}}))
    return path


@pytest.mark.parametrize("slowdown", [1.5, 3.0])
def test_compare_of_benchmark_files_allows_for_the_machines_swing_and_calls_no_change_from_one_process(
        tmp_path, capsys, slowdown):
    """pytest-benchmark times each benchmark in one stretch, so a benchmark can meet a slow moment
    of the machine that no within-benchmark statistic sees (the swing is printed); and a file is
    one process, so even a 3x change is not called a regression: one process's speed is one
    sample (docs/methodology.md measured a process-level 4x)."""
    old = _benchmark_file(tmp_path / "old.json", 1.0, 1.6)
    new = _benchmark_file(tmp_path / "new.json", slowdown, 1.6)
    assert main(["compare", str(old), str(new), "--threshold", "0.10"]) == 0
    out = capsys.readouterr().out
    assert "; 0 regression(s) beyond 10%" in out and "timed in one stretch" in out
    assert "[0.625, 1.600]" in out and "1 process on a side" in out


def test_report_of_a_missing_directory_is_one_clear_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "holds no measurements.jsonl: is it a convbench run directory?" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--threshold", "nan"], "argument --threshold: must be a finite number; got nan"),
    (["--threshold", "-0.1"], "argument --threshold: must lie in [0, 10]; got -0.1"),
])
def test_compare_usage_errors_exit_2(small_run, capsys, args, message):
    assert main(["compare", str(small_run), str(small_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_compare_of_an_unreadable_input_exits_2(small_run, tmp_path, capsys):
    assert main(["compare", str(small_run), str(tmp_path / "none")]) == 2
    assert "holds no measurements.jsonl" in capsys.readouterr().err


def test_report_marks_noisy_and_contended_cells_and_keeps_one_unit_per_column(small_run, tmp_path):
    marked = tmp_path / "marked"
    shutil.copytree(small_run, marked)
    rows = [json.loads(line) for line in (marked / MEASUREMENTS).read_text().splitlines()]
    for row in rows:
        row["noisy"] = row["backend"] == "im2col"
        row["contended"] = row["backend"] == "naive"
    (marked / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(marked), "--no-plots"]) == 0
    report = (marked / "report.md").read_text()
    im2col = [line for line in report.splitlines() if line.startswith("| im2col ") and "x)" in line]
    naive = [line for line in report.splitlines() if line.startswith("| naive ") and "x)" in line]
    assert im2col and all(line.count("x)~") >= 4 for line in im2col)
    assert naive and all(line.count("x)!") >= 4 for line in naive)
    assert "`~` noisy" in report and "`!` contended" in report
    assert "Median times, each column in the unit its header names (ratio to the best):" in report
    assert "| conv1 (µs) " in report or "| conv1 (ms) " in report


def test_report_of_a_run_whose_suite_was_a_path_with_folders(tmp_path, capsys):
    folder = tmp_path / "my suites" / "deep"
    folder.mkdir(parents=True)
    suite = folder / "tiny.csv"
    suite.write_text("name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
                     "c1,conv2d,1,1,8,8,2,3,3,1,0,1,1,1\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--backends", "naive,im2col", "--threads", "1", "--rounds", "1",
                 "--quiet", "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    pngs = [p.name for p in (out / "plots").iterdir()]
    assert pngs and all("/" not in p and p.endswith(".png") for p in pngs)


def _as_machine(src, dst, name):
    """A copy of run ``src`` as if measured on the machine called ``name`` (rows and sessions)."""
    shutil.copytree(src, dst)
    for file in ("measurements.jsonl", "sessions.jsonl"):
        lines = (dst / file).read_text().splitlines()
        (dst / file).write_text("".join(json.dumps({**json.loads(line), "machine": name}) + "\n" for line in lines))
    return dst


def test_rows_name_their_machine(small_run):
    import platform

    rows, sessions = RunDirectory(small_run).rows(), RunDirectory(small_run).sessions()
    assert {r["machine"] for r in rows} == {s["machine"] for s in sessions} == {platform.node()}
    assert {"host", "cpu", "cores", "blas", "peaks"} <= set(sessions[0]) and all("calibration_s" in r for r in rows)


def test_compare_refuses_other_machines_unless_asked(small_run, tmp_path, capsys):
    a, b = _as_machine(small_run, tmp_path / "a", "alpha"), _as_machine(small_run, tmp_path / "b", "beta")
    assert main(["compare", str(a), str(b)]) == 2
    assert "alpha" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--across-machines"]) == 0
    assert "48 measurements compared" in capsys.readouterr().out


def test_report_of_runs_from_two_machines_puts_them_side_by_side(small_run, tmp_path, capsys):
    a, b = _as_machine(small_run, tmp_path / "a", "alpha"), _as_machine(small_run, tmp_path / "b", "beta")
    assert main(["report", str(a), str(b), "--no-plots"]) == 2  # where would it go?
    assert "--out" in capsys.readouterr().err
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "both"), "--no-plots"]) == 0
    text = (tmp_path / "both" / "report.md").read_text()
    assert "## Across machines" in text and "| machine " in text
    across = text.split("## Across machines")[1].split("\n# ")[0]
    assert "| alpha " in across or "alpha" in across.splitlines()[6]  # machines are the columns
    winner_rows = [line for line in across.splitlines() if "winner" in line]
    assert winner_rows and all(line.count("|") == 5 for line in winner_rows)  # problem, backend, alpha, beta
    assert "# alpha" in text and "# beta" in text
    every = text.split("## All measurements")[1]  # every row of both machines, not the last table across them
    assert sum(line.startswith("| lenet5 ") for line in every.splitlines()) == 2 * 48


def test_report_lists_every_measurement_with_chosen_columns_and_order(small_run, tmp_path, capsys):
    out = tmp_path / "sorted"
    assert main(["report", str(small_run), "--out", str(out), "--no-plots",
                 "--columns", "problem,backend,direction,median,iqr,calls", "--sort=-median"]) == 0
    section = (out / "report.md").read_text().split("## All measurements")[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["problem", "backend", "direction"] and header[3].startswith("median (")
    assert len(lines) == 2 + 48  # header, rule, one line per measurement
    medians = [float(line.strip("|").split("|")[3].replace(",", "")) for line in lines[2:]]
    assert medians == sorted(medians, reverse=True)


@pytest.mark.parametrize("option", ["--columns", "--sort"])
def test_report_names_a_bad_column(small_run, tmp_path, capsys, option):
    assert main(["report", str(small_run), "--out", str(tmp_path / "r"), "--no-plots", option, "speed"]) == 2
    err = capsys.readouterr().err
    assert f"{option} takes column names among" in err and "speed" in err and err.count("\n") == 1


def _with_statuses(src, dst, statuses):
    """A copy of run ``src`` whose rows have the given statuses (rows not "ok" lose their times)."""
    shutil.copytree(src, dst)
    rows = RunDirectory(dst).rows()
    rows = [r if status == "ok" else not_timed(r, status) for r, status in zip(rows, statuses)]
    (dst / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


# a quarter of the profile's examples (10 by default, 250 with --hypothesis-profile thorough): each
# writes a report and two comparisons, about 0.6 s
@settings(max_examples=max(1, settings().max_examples // 4), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["ok", "ok", "skipped", "error", "wrong", "unavailable"]), min_size=48, max_size=48))
def test_report_and_compare_take_any_mix_of_statuses(small_run, tmp_path_factory, statuses):
    """Whatever was measured and whatever was not (a layer's only time being auto's, say), report
    writes its tables and compare its verdicts: nothing raises."""
    run = _with_statuses(small_run, tmp_path_factory.mktemp("mixed") / "run", statuses)
    assert main(["report", str(run), "--no-plots"]) == 0
    assert main(["compare", str(small_run), str(run)]) in (0, 1)
    assert main(["compare", str(run), str(run)]) == 0


@pytest.mark.parametrize("kept", ["auto", "nothing"])
def test_report_draws_a_run_where_only_some_or_no_backends_were_timed(small_run, tmp_path, kept):
    statuses = [("ok" if r["backend"] == kept else "skipped") for r in RunDirectory(small_run).rows()]
    run = _with_statuses(small_run, tmp_path / "run", statuses)
    assert main(["report", str(run)]) == 0
    assert "skipped" in (run / "report.md").read_text()


@pytest.mark.parametrize(("row", "shown"), [
    ({"pick": "im2col"}, ("im2col", "im2col")),  # a suite's row: one pick
    ({"picks": "0:numba 2:numba"}, ("0:numba 2:numba", "numba")),  # a step bound to one backend throughout
    ({"picks": "0:im2col 2:numba"}, ("0:im2col 2:numba", None)),  # no single backend's row is its pick's
    ({"picks": "0:numba 2:numba | 0:im2col 2:numba"}, ("0:numba 2:numba | 0:im2col 2:numba", None)),
    ({"pick": float("nan"), "picks": None}, ("-", None)),
    ({}, ("-", None)),
])
def test_the_picks_table_shows_a_suite_rows_pick_and_a_steps_picks_by_layer(row, shown):
    assert _shown_pick(row) == shown


def test_a_step_on_auto_bound_to_one_backend_is_compared_with_that_backends_step():
    rows = pd.DataFrame([
        {"status": "ok", "backend": "numba", "problem": "seed002-b4", "median_s": 0.0005},
        {"status": "ok", "backend": "im2col", "problem": "seed002-b4", "median_s": 0.0009},
        {"status": "ok", "backend": "auto", "problem": "seed002-b4", "median_s": 0.00051, "picks": "0:numba 2:numba"},
    ])
    table = picks_table(rows, "auto")
    assert table.loc["seed002-b4", "pick"] == "0:numba 2:numba"
    assert table.loc["seed002-b4", "auto / pick"] == table.loc["seed002-b4", "auto / fastest"] == "1.02x"
