"""What a reader sees in a report, a comparison and the terminal: times in a unit per column and
never an exponent, shares as percentages, a banner over a table whose rows are mostly in doubt,
and the machine's peak as the best of its probes. On synthetic runs, written row by row here, whose
times span what real ones do (naive thousands of times the fastest)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import BarContainer

from convbench.bench import formats
from convbench.bench.results import MEASUREMENTS, load_results
from convbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXPONENT = re.compile(r"\d[eE][+-]?\d")
# problem -> backend -> median seconds: a conv whose slowest takes 5,300 times its fastest, and a small pool
TIMES = {"big": {"naive": 6.47, "im2col": 4.42e-3, "numba": 1.22e-3, "auto": 1.25e-3},
         "small": {"naive": 18.6e-3, "im2col": 213e-6, "numba": 36.5e-6, "auto": 41e-6}}
PEAKS = (43.0, 83.8)  # two sessions' SGEMM probes, the first read in a slow moment of the host


def _row(session: str, problem: str, backend: str, median: float, **extra) -> dict:
    flops = 2e6
    return {"schema": 3, "session": session, "suite": "tiny", "op": "conv2d", "N": 1, "C": 1, "H": 8, "W": 8, "K": 1,
            "R": 3, "S": 3, "groups": 1, "repeat": 1, "problem": problem, "backend": backend, "dtype": "float32",
            "threads": 2, "machine": "m", "direction": "forward+backward", "status": "ok", "median_s": median,
            "min_s": median, "fastest_s": median, "iqr_s": median / 50, "calls": 10, "processes": 1,
            "turn_medians_s": [[median] * 5], "turn_fastest_s": [[median] * 5], "turn_calls": [[2] * 5],
            "noisy": False, "contended": False, "flops": flops, "gflops": flops / median / 1e9,
            "peak_gflops": PEAKS[0], "pct_of_peak": 100 * flops / median / 1e9 / PEAKS[0],
            **({"pick": "numba"} if backend == "auto" else {}), **extra}


def _run(path, flagged: dict[str, int] | None = None):
    """A run folder of TIMES: ``flagged`` {"contended": n, ...} marks the first n rows so."""
    path.mkdir()
    (path / "plan.json").write_text(json.dumps({"suites": ["tiny"], "threads": [2]}))
    sessions = [{"schema": 3, "session": f"s{i}", "machine": "m", "cpu": "Test CPU", "cores": 2,
                 "peaks": {"2": {"sgemm_gflops": peak, "copy_gbs": 20.0 + i}}} for i, peak in enumerate(PEAKS)]
    (path / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sessions))
    rows = [_row("s0", p, b, t) for p, times in TIMES.items() for b, t in times.items()]
    for flag, count in (flagged or {}).items():
        for row in rows[:count]:
            row[flag] = True
    (path / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("value", "written"), [
    (6.4723e6, "6,470,000"), (5303.3, "5,300"), (999.6, "1,000"), (36.5, "36.5"), (1.0, "1.00"), (0.00256, "0.00256"),
    (1.234e-7, "0.000000123"), (0, "0"), (-0.5, "-0.500"), (float("nan"), "-"), (None, "-"), (True, "-"),
])
def test_a_number_has_three_significant_digits_grouped_thousands_and_no_exponent(value, written):
    assert formats.number(value) == written


@pytest.mark.parametrize(("seconds", "written"), [
    (6.47, "6.47 s"), (4.42e-3, "4.42 ms"), (36.5e-6, "36.5 µs"), (999.9e-6, "1.00 ms"), (2e-10, "0.200 ns"),
    (4530.0, "4,530 s"), (float("nan"), "-"),
])
def test_a_time_alone_gets_the_unit_that_suits_it(seconds, written):
    assert formats.duration(seconds) == written


def test_each_column_of_the_medians_table_has_the_unit_of_its_fastest_time(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["report", str(run), "--no-plots"]) == 0
    report = (run / "report.md").read_text()
    assert not EXPONENT.search(report.split("## All measurements")[0]), "an exponent in a table"
    header = next(line for line in report.splitlines() if line.startswith("|") and "big (" in line)
    assert "big (ms)" in header and "small (µs)" in header
    naive = next(line for line in report.splitlines() if line.startswith("| naive ") and "x)" in line)
    assert "6,470 (5,300x)" in naive and "18,600 (510x)" in naive
    assert "Median times, each column in the unit its header names" in report


def test_a_share_of_the_peak_is_a_percentage_of_the_best_probe(tmp_path, capsys):
    """The sessions probed 43 and 83.8 GFLOP/s: the report's peak is 83.8, and numba's 2 MFLOP in
    1.22 ms (1.64 GFLOP/s) is 1.96 % of it."""
    run = _run(tmp_path / "run")
    frame = load_results(run)
    assert set(frame.peak_gflops) == {83.8} and set(frame.bandwidth_gbs) == {21.0}
    numba = frame[(frame.backend == "numba") & (frame.problem == "big")].iloc[0]
    assert numba.pct_of_peak == pytest.approx(100 * 2e6 / 1.22e-3 / 1e9 / 83.8)
    assert main(["report", str(run), "--no-plots"]) == 0
    report = (run / "report.md").read_text()
    assert "SGEMM peak 83.8 GFLOP/s, copy bandwidth 21.0 GB/s (the best" in report
    summary = next(line for line in report.splitlines() if line.startswith("| numba "))
    assert re.search(r"\| \d[\d.,]* % ", summary), summary


@pytest.mark.parametrize(("flagged", "banner"), [
    ({"contended": 8}, "8 of 8 of these measurements were contended"),
    ({"contended": 5}, "5 of 8 of these measurements were contended"),
    ({"noisy": 6, "contended": 7}, "7 of 8 of these measurements were contended"),
    ({"contended": 4}, None),  # half is not most
    ({}, None),
])
def test_a_table_whose_rows_are_mostly_in_doubt_gets_a_banner_saying_what_to_do(tmp_path, capsys, flagged, banner):
    run = _run(tmp_path / "run", flagged)
    assert main(["report", str(run), "--no-plots"]) == 0
    shown = capsys.readouterr().out
    report = (run / "report.md").read_text()
    for text in (report, shown):
        if banner is None:
            assert "Warning:" not in text
        else:
            assert banner in text and "quiet machine" in text and "convbench ab" in text
    if flagged.get("noisy", 0) > 4:
        assert "6 of 8 of these measurements were noisy" in report
    if flagged and banner is None:
        assert f"{flagged['contended']} of 8 measurement(s) were contended." in report


@pytest.mark.parametrize("contended", [0, 8])
def test_auto_against_its_pick_carries_the_marks_of_both_times_and_says_why_when_contended(tmp_path, contended):
    """auto 400x faster than the numba it calls was a contended run at 2 threads beside a busy core:
    numba's calls waited a scheduler slice (8 ms) for their second thread, or did not."""
    run = _run(tmp_path / "run", {"contended": contended})
    assert main(["report", str(run), "--no-plots"]) == 0
    report = (run / "report.md").read_text()
    big = next(line for line in report.splitlines() if line.startswith("| big ") and "| numba " in line)
    cells = [cell.strip() for cell in big.strip("|").split("|")]
    mark = "!" if contended else ""
    assert cells[:5] == ["big", "numba", f"1.25 ms{mark}", f"1.22 ms{mark}", f"1.02x{mark}"], cells
    assert ("waits for its last thread" in report) == bool(contended)


def test_the_comparison_warns_of_contended_rows_and_gives_each_row_its_unit(tmp_path, capsys):
    quiet, busy = _run(tmp_path / "quiet"), _run(tmp_path / "busy", {"contended": 8})
    assert main(["compare", str(quiet), str(busy)]) in (0, 1)
    out = capsys.readouterr().out
    assert "Warning: 8 of 16 of the compared measurements were contended" not in out  # half is not most
    assert main(["compare", str(busy), str(busy)]) == 0
    out = capsys.readouterr().out
    assert "Warning: 16 of 16 of the compared measurements were contended" in out
    assert not EXPONENT.search(out)
    assert "| 6.47 s " in out and "| 36.5 µs " in out


@pytest.mark.parametrize("fmt", ["markdown", "plain", "csv"])
def test_report_prints_its_summary_to_the_terminal(tmp_path, capsys, fmt):
    run = _run(tmp_path / "run")
    assert main(["report", str(run), "--no-plots", "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert f"wrote {run / 'report.md'}" in captured.err and str(run) not in captured.out
    if fmt == "csv":
        table = pd.read_csv(io.StringIO(captured.out))
        assert len(table) == 8 and table.median_s.max() == 6.47 and "backend" in table
    else:
        assert "tiny, forward+backward (float32, 2 threads)" in captured.out
        assert ("| numba " if fmt == "markdown" else "\nnumba ") in captured.out
        assert not EXPONENT.search(captured.out)


def test_report_prints_the_measurements_its_columns_choose(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["report", str(run), "--no-plots", "--columns", "problem,backend,median,peak%", "--sort=-median"]) == 0
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert cells[0] == ["problem", "backend", "median (µs)", "peak%"] and len(cells) == 2 + 8
    assert cells[2][:3] == ["big", "naive", "6,470,000"] and cells[2][3].endswith(" %")


def test_report_refuses_an_unknown_format(tmp_path, capsys):
    assert main(["report", str(_run(tmp_path / "run")), "--format", "html"]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "html" in err


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved, by file name, to be checked by what it holds (not by its pixels)."""
    import matplotlib.figure

    figures = {}
    save = matplotlib.figure.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def _plotted_run(path):
    """Two convolutions and a pool: naive skipped on c2, im2col contended on c1, numba's phases
    recorded on c1 but not on c2 (a call over a second), forward rows for the roofline."""
    rows = []
    for problem, op, scale in (("c1", "conv2d", 1.0), ("c2", "conv2d", 1.5e6), ("p1", "maxpool2d", 0.1)):
        for backend, t in (("naive", 1.0), ("im2col", 4e-3), ("numba", 1e-3), ("auto", 1.1e-3)):
            for direction in ("forward+backward", "forward"):
                row = _row("s0", problem, backend, t * scale * 1e-3 * (0.5 if direction == "forward" else 1),
                           op=op, direction=direction, intensity=2.0 + scale / 1e6,
                           turn_medians_s=[[t * scale * 1e-3 * f for f in (0.9, 1.0, 1.0, 1.1, 1.2)]])
                if (problem, backend) == ("c2", "naive"):
                    row = {k: v for k, v in row.items() if k not in ("median_s", "gflops", "pct_of_peak")}
                    row.update(status="skipped", reason="estimated 1,500 s per call; over --max-time")  # naive's 1.5e3 s
                row["contended"] = (problem, backend) == ("c1", "im2col")
                if backend == "numba" and problem != "c2":
                    row["phases"] = {"pack": row["median_s"] * 0.2, "gemm": row["median_s"] * 0.7}
                rows.append(row)
    path.mkdir()
    (path / "plan.json").write_text(json.dumps({"suites": ["tiny"], "threads": [2]}))
    (path / "sessions.jsonl").write_text(json.dumps({"schema": 3, "session": "s0", "machine": "m", "peaks": {
        "2": {"sgemm_gflops": 80.0, "copy_gbs": 20.0}}}) + "\n")
    (path / MEASUREMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_results(path)


def _outside(legend, ax) -> bool:
    return legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_the_gflops_plot_keeps_pools_apart_shows_spreads_and_doubts_and_names_what_it_leaves_out(tmp_path, drawn):
    from convbench.bench.plots import write_plots

    write_plots(_plotted_run(tmp_path / "run"), tmp_path / "plots")
    fig = drawn["gflops-tiny-float32-2t.png"]
    conv, pool = fig.axes
    assert (conv.get_title(), pool.get_title()) == ("convolution", "pooling")
    assert [t.get_text() for t in conv.get_xticklabels()] == ["c1", "c2"] and [t.get_text() for t in pool.get_xticklabels()] == ["p1"]
    peaks = [[line.get_ydata()[0] for line in ax.get_lines() if line.get_gid() == "peak"] for ax in (conv, pool)]
    assert peaks == [[80.0], []]  # the best session's SGEMM probe, over the convolutions only
    bars = {c.get_label(): c for c in conv.containers if isinstance(c, BarContainer)}
    assert all(c.errorbar is not None for c in bars.values())  # each bar's interquartile range
    assert bars["im2col"][0].get_hatch() == "xx" and not bars["numba"][0].get_hatch()
    legend = pool.get_legend()
    assert _outside(legend, pool) and "contended (xx)" in [t.get_text() for t in legend.get_texts()]
    notes = [t.get_text() for t in fig.texts if t.get_gid() == "note"]
    assert notes and "not shown: naive on c2 (skipped: estimated 1,500 s per call" in notes[0]


def test_the_phase_plot_gives_each_layers_time_and_names_a_layer_without_phases(tmp_path, drawn):
    from convbench.bench.plots import write_plots

    write_plots(_plotted_run(tmp_path / "run"), tmp_path / "plots")
    fig = drawn["phases-tiny-float32-2t.png"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["c1\n1.00 µs", "p1\n100 ns"]
    notes = [t.get_text() for t in fig.texts if t.get_gid() == "note"]
    assert notes == ["not shown: numba on c2 (1.50 s a call: calls over 1 s get no instrumented call)"]


def test_the_roofline_has_a_marker_per_direction_and_draws_a_picker_hollow(tmp_path, drawn):
    from convbench.bench.plots import MARKERS, write_plots

    write_plots(_plotted_run(tmp_path / "run"), tmp_path / "plots")
    fig = drawn["roofline-2t.png"]
    ax = fig.axes[0]
    points = {c.get_gid(): c for c in ax.collections}
    for backend in ("naive", "im2col", "numba", "auto"):
        for direction in ("forward", "forward+backward"):
            assert f"{backend}|{direction}" in points
    assert points["auto|forward"].get_facecolor().size == 0 or points["auto|forward"].get_facecolor()[0][3] == 0
    assert points["numba|forward"].get_facecolor()[0][3] > 0
    assert len(points["doubtful"].get_offsets()) == 2  # im2col's contended c1, both directions
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"forward", "forward+backward"} <= set(labels) and "auto (hollow: its picks)" in labels
    assert _outside(ax.get_legend(), ax) and len(MARKERS) == 3


def test_a_step_plot_labels_each_backend_with_its_time_in_a_suitable_unit(tmp_path, drawn):
    from convbench.bench.plots import write_plots

    frame = pd.DataFrame([{"status": "ok", "direction": "step", "threads": 1, "problem": "lenet5-b64", "backend": b,
                           "suite": "step", "dtype": "float32", "op": "train_step",
                           "median_s": t, "conv_s": t / 2, "pool_s": t / 8, "dense_s": t / 8, "other_s": t / 8}
                          for b, t in (("naive", 4.53), ("numba", 0.0123))])
    write_plots(frame, tmp_path / "plots")
    labels = [t.get_text() for t in drawn["step-lenet5-b64-1t.png"].axes[0].get_yticklabels()]
    assert labels == ["naive (4.53 s)", "numba (12.3 ms)"]


@pytest.mark.parametrize(("steps", "window"), [(5, 1), (19, 1), (57, 5), (2000, 40)])
def test_a_training_curve_names_its_running_mean_truly(tmp_path, drawn, steps, window):
    from convbench.cnn.train import _plot_curves, running_window

    assert running_window(steps) == window
    curve = pd.DataFrame({"step": range(steps), "train_loss": 1.0, "train_accuracy": 0.5})
    history = pd.DataFrame({"step": [steps - 1], "val_loss": [1.0], "val_accuracy": [0.5]})
    _plot_curves(history, curve, "t", tmp_path / "curves.png")
    labels = drawn["curves.png"].axes[0].get_legend_handles_labels()[1]
    assert "train (each step)" in labels and "mean of 1 step" not in " ".join(labels)
    assert (f"train (running mean of {window} steps)" in labels) == (window > 1)


@pytest.mark.parametrize(("cluster_s", "word"), [(10.9, "beyond"), (3.9, "within")])
def test_the_cluster_overhead_says_whether_it_stands_out_of_the_spread(tmp_path, cluster_s, word):
    """A difference of 597 ms a cell against a spread of 33 ms was written "within" it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_overhead", ROOT / "scripts" / "cluster_overhead.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = {"plan": {"match": None}, "cells": 12, "seconds": {"local": [3.77, 3.68, 4.07], "cluster": [cluster_s] * 3},
              "local_median_s": 3.77, "cluster_median_s": cluster_s, "empty_task_round_trips_s": [0.011, 0.0198],
              "cpu": "Test CPU", "cores": 2, "git_commit": "abc", "started": "2026-12-07"}
    text = script.markdown(result, tmp_path)
    assert f"{word} the widest spread of one side's repetitions (32.5 ms per cell)" in text
    assert not EXPONENT.search(text) and "| 3.77 s (3.68 s-4.07 s) | 314 ms |" in text
