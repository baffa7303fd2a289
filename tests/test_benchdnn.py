"""benchdnn's descriptors and batch files, read as benchdnn reads them.

The descriptor grammar is checked against a line-by-line transcription of benchdnn's own
str2desc / sanitize_desc / init_pad_r (tests/benchdnn_oracle.py) on lines from oneDNN's input
files (tests/data/benchdnn/lines.txt) and on random descriptors; the batch-file rules on small
files written here.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest
from benchdnn_oracle import str2desc
from hypothesis import given
from hypothesis import strategies as st

from convbench.bench.problems import Problem
from convbench.bench.report import duration, summary_table
from convbench.bench.results import load_results
from convbench.bench.runner import Plan
from convbench.bench.suites import SuiteError, parse_descriptor, read_benchdnn, read_suite
from convbench.bench.suites.descriptor import FIELDS, DescriptorError, parse
from convbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "benchdnn"
LINES = [line for line in (DATA / "lines.txt").read_text().splitlines() if line and not line.startswith("#")]


def _as_oracle(text: str) -> dict | None:
    """convbench's reading in the oracle's terms (desc_t's fields), or None where it refuses."""
    try:
        return parse(text).desc_t()
    except DescriptorError:
        return None


@pytest.mark.parametrize("line", LINES)
def test_each_real_line_reads_as_benchdnn_reads_it(line):
    assert _as_oracle(line) == str2desc(line)


def test_the_lines_cover_every_rule():
    """The data holds each kind of line the grammar has: 1-D, 2-D, 3-D, derived outputs and
    paddings, a far-end padding that differs from the near one, and lines benchdnn refuses."""
    read = [d for d in map(str2desc, LINES) if d is not None]
    assert {d["ndims"] for d in read} == {3, 4, 5}
    assert any(d["ph_r"] != d["ph"] for d in read) and any(d["ph_r"] < 0 for d in read)
    assert any(d is None for d in map(str2desc, LINES))


_words = st.lists(st.one_of(
    st.tuples(st.sampled_from(FIELDS), st.integers(-1, 12)).map(lambda kv: f"{kv[0]}{kv[1]}"),
    st.sampled_from(["_", "__", 'n"x"', "n", "ih", "q", "+3"])), max_size=10)


@given(words=_words)
def test_any_descriptor_reads_as_benchdnn_reads_it(words):
    text = "".join(words)
    assert _as_oracle(text) == str2desc(text)


def test_underscores_one_d_and_partly_given_widths():
    p = parse_descriptor('mb32_g1ic3oc32_ih224oh112kh3sh2dh0ph1_iw224ow112kw3sw2dw0pw1_n"mobilenet:conv1*3"')
    assert (p.name, p.N, p.C, p.K, p.H, p.out_h, p.stride, p.repeat) == ("mobilenet:conv1*3", 32, 3, 32, 224, 112, (2, 2), 3)
    assert p.sides == (1, 0, 1, 0)  # benchdnn's far-end padding: 0, where the output size needs no more
    one_d = parse_descriptor('g128ic128iw16oc128ow16kw3sw1pw1n"conv_dw"')
    assert (one_d.H, one_d.R, one_d.W, one_d.S, one_d.out_h, one_d.out_w, one_d.groups) == (1, 1, 16, 3, 1, 16, 128)
    partly = parse_descriptor("mb1ic4ih8iw8oc4kh3kw3sh2ph1")  # the width keeps benchdnn's defaults
    assert (partly.stride, partly.sides, partly.out_h, partly.out_w) == ((2, 1), (1, 0, 0, 0), 4, 6)


def test_far_end_padding_from_the_output_size():
    same = parse_descriptor("mb1ic8ih8oc8oh4kh3sh2")  # TensorFlow's SAME at stride 2: one more at the bottom
    assert (same.sides, same.out_h) == ((0, 1, 0, 1), 4)
    shortcut = parse_descriptor("mb1ic8ih56oc8oh28kh1sh2ph0")  # benchdnn's ph_r is -1: the last row unread
    assert (shortcut.sides[:2], shortcut.out_h) == ((0, 0), 28)


def _file(tmp_path, text: str, name: str = "shapes") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_batch_files_include_relative_to_the_including_file(tmp_path):
    (tmp_path / "inputs").mkdir()
    _file(tmp_path / "inputs", 'mb2ic3ih8oc4kh3n"a*3"\n', "shapes_a")
    top = _file(tmp_path, "--dt=f32:f32:f32 --dir=FWD_B --batch=inputs/shapes_a\n--dir=BWD_D --batch=inputs/shapes_a\n")
    (a,) = read_benchdnn(top).problems
    assert (a.name, a.repeat, a.dtypes, a.directions) == ("a*3", 3, ("float32",), ("forward", "backward"))


def test_batch_file_cycles_and_depth_are_refused(tmp_path):
    _file(tmp_path, "--batch=b\n", "a")
    _file(tmp_path, "--batch=a\n", "b")
    with pytest.raises(SuiteError, match=r"b:1: --batch=.*a includes itself \(through a -> b\)"):
        read_benchdnn(tmp_path / "a")


def test_mb_lists_and_names_used_twice(tmp_path):
    path = _file(tmp_path, '--mb=2,16 ic3ih8oc4kh3n"c"\n--reset ic3ih9oc4kh3n"c"\n')
    names = [(p.name, p.N, p.H) for p in read_benchdnn(path).problems]
    assert names == [("c@mb2", 2, 8), ("c@mb16", 16, 8), ("c", 2, 9)]
    twice = _file(tmp_path, 'ic3ih8oc4kh3n"c"\nic3ih9oc4kh3n"c"\n', "twice")
    assert [p.name for p in read_benchdnn(twice).problems] == ["c", "c#2"]


def test_what_cannot_run_is_skipped_and_counted_one_line_each_kind(tmp_path):
    path = _file(tmp_path, "\n".join([
        "mb1ic3ih8oc4kh3", "ic3id4oc4kd3", "ic3id5oc4kd3",
        "--dt=u8:s8:u8 ic3ih8oc4kh3", "--dt=f32,bf16 ic3ih7oc4kh3", "--reset",
        "--attr-post-ops=relu ic3ih6oc4kh3", "--attr-post-ops= ic3ih5oc4kh3",
        "--alg=wino ic3ih4oc4kh3", "--reset --stag=axb ic3ih3oc4kh3", "--frobnicate=1 ic3ih2oc4kh2", ""]))
    reading = read_benchdnn(path)
    assert [p.H for p in reading.problems] == [8, 7, 5, 3]
    assert {kind: len(where) for kind, where in reading.skipped.items()} == {
        "3-D descriptor(s) (convbench runs 1-D and 2-D)": 2,
        "problem(s) in data type u8:s8:u8 (convbench runs f32 and f64)": 1,
        "problem(s) in data type bf16 (convbench runs f32 and f64)": 1,
        "problem(s) under --attr-post-ops (attributes: post-ops, scales, zero points)": 1,
        "problem(s) under --alg=wino, Winograd: no backend of convbench has it": 1,
        "problem(s) under --frobnicate, an option convbench does not know": 1,
    }
    assert reading.lines()[0] == f"skipped 2 3-D descriptor(s) (convbench runs 1-D and 2-D) (first at {path}:2)"
    assert len(reading.ignored) == 1
    with pytest.raises(SuiteError, match=rf"{path}:2: 3-D descriptor\(s\).*--strict"):
        read_benchdnn(path, strict=True)


def test_a_file_of_nothing_runnable_says_why(tmp_path):
    path = _file(tmp_path, "ic3id4oc4kd3\n")
    with pytest.raises(SuiteError, match=r"holds no problem convbench can run: skipped 1 3-D descriptor"):
        read_suite(str(path))


def test_padding_no_kernel_takes_is_skipped(tmp_path):
    """benchdnn reads a padding from the output size that may be negative: rows no output reads.
    At the far end, by less than a stride, it is the same problem as no padding; otherwise the
    line is skipped and counted."""
    path = _file(tmp_path, "mb1ic3ih8oc4kh3oh2\nmb1ic3ih8oc4kh3oh2ph0\nmb1ic3ih56oc4kh1oh28sh2ph0\n")
    reading = read_benchdnn(path)
    assert [(p.H, p.sides) for p in reading.problems] == [(56, (0, 0, 0, 0))]
    assert {kind: len(where) for kind, where in reading.skipped.items()} == {
        "descriptor(s) with a negative padding (input rows no output reads; convbench's kernels take none)": 2}


def test_sizes_over_the_kernels_limit_are_skipped(tmp_path):
    path = _file(tmp_path, "mb1ic1oc1iw4294967311kw3\nmb1ic1oc1iw8kw3\n")  # shapes_large_conv's first line
    reading = read_benchdnn(path)
    assert [p.W for p in reading.problems] == [8]
    assert list(reading.skipped) == ["descriptor(s) with a size over 2**31 - 1 (the kernels' limit, 2,147,483,647)"]


def test_mb0_runs_only_with_a_batch(tmp_path):
    path = _file(tmp_path, "mb0ic3ih8oc4kh3\n")
    assert list(read_benchdnn(path).skipped) == ["descriptor(s) with mb0, an empty batch (give --batch)"]
    assert [p.N for p in read_suite(str(path), batch=4).problems] == [4]


@pytest.mark.parametrize("text, message", [
    ("mb1ic3ih8oc4kh3__kw3", r"shapes:1: unrecognized pattern in 'mb1ic3ih8oc4kh3__kw3' starting from '_kw3'"),
    ("mb1ic3ih8oc4kh", r"shapes:1: no value found for 'kh'"),
    ("mb1ic3oc4", r"shapes:1: the problem must have at least one spatial dimension"),
    ("mb1ic3ih8oc4kh3g2", r"shapes:1: mb1ic3ih8oc4kh3g2: groups=2 must divide C=3"),
    ("mb1ic3ih8oc4kh3ow9", r"shapes:1: 'iw' was not specified"),
    ("--dir=BWD_X ic3ih8oc4kh3", r"shapes:1: option '--dir=BWD_X': benchdnn has no direction 'BWD_X'"),
])
def test_lines_benchdnn_refuses_name_the_line(tmp_path, text, message):
    with pytest.raises(SuiteError, match=message):
        read_benchdnn(_file(tmp_path, text + "\n"))


def test_asymmetric_padding_in_a_problem():
    p = Problem("p", "conv2d", 1, 3, 9, 9, 4, 3, 3, stride=(2, 2), padding=(0, 1, 1, 1))
    assert (p.out_h, p.out_w, p.padding, p.record()["padding"]) == (4, 5, (0, 1, 1, 1), "0/1x1")
    assert "--padding=0,1,1,1" in p.identity()
    assert Problem("q", "conv2d", 1, 3, 9, 9, 4, 3, 3, padding=(1, 1, 2, 2)).padding == (1, 2)  # one spelling


def test_list_shows_a_file_as_read(tmp_path, capsys):
    path = _file(tmp_path, '--dir=FWD_B\nmb1_ic3oc4_ih8oh4kh3sh2_n"net:c1*3"\nic3id4oc4kd3\n')
    assert main(["list", "--suite", str(path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    (row,) = pd.read_csv(io.StringIO(out), dtype=str).to_dict("records")
    assert row == {"suite": str(path), "problem": "net:c1*3", "op": "conv2d", "N": "1", "C": "3", "H": "8", "W": "8",
                   "K": "4", "R": "3", "S": "3", "stride": "2x2", "padding (t,b,l,r)": "0,1,0,1", "output": "4x4",
                   "dilation": "1x1", "groups": "1", "repeat": "3", "directions": "forward", "dtypes": "all"}
    assert err == f"{path}: skipped 1 3-D descriptor(s) (convbench runs 1-D and 2-D) (first at {path}:3)\n"
    assert main(["list", "--suite", str(path)]) == 0
    assert "| net:c1*3 " in capsys.readouterr().out


def test_a_benchdnn_file_runs_and_its_repeat_counts_weigh_the_model_time(tmp_path):
    path = _file(tmp_path, '--dir=FWD_B\nmb1_ic3oc4_ih8oh4kh3sh2_n"net:c1*3"\nmb1ic4ih4oc4kh1n"net:c2"\n')
    out = tmp_path / "run"
    assert main(["run", "--suite", str(path), "--backends", "im2col,numba", "--threads", "1", "--rounds", "1",
                 "--directions", "forward,backward", "--quiet", "--out", str(out)]) == 0
    rows = load_results(out)
    assert set(rows.status) == {"ok"} and set(rows.direction) == {"forward"}
    times = rows[rows.backend == "im2col"].set_index("problem")["median_s"]
    table = summary_table(rows)
    assert table.loc["im2col", "model time (sum x repeat)"] == duration(3 * times["net:c1*3"] + times["net:c2"])


def test_the_coverage_script_reads_a_folder_of_shapes_files(tmp_path):
    """scripts/benchdnn_coverage.py, as the note's figures were made, on this folder's lines."""
    (tmp_path / "shapes_lines").write_text((DATA / "lines.txt").read_text())
    (tmp_path / "harness_not_shapes").write_text("--frobnicate\n")
    spec = importlib.util.spec_from_file_location("coverage", ROOT / "scripts" / "benchdnn_coverage.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path), "--out", str(tmp_path / "out.md")]) == 0
    summary = (tmp_path / "out.md").read_text().splitlines()[0]
    refused = sum(str2desc(line) is None for line in LINES)
    planar = sum(d is not None and d["ndims"] < 5 for d in map(str2desc, LINES))
    assert summary.startswith(f"1 files, {len(LINES)} descriptors: {planar} 1-D and 2-D, {planar} of them read as "
                              f"benchdnn reads them (100.00%)")
    assert f"{refused} that benchdnn refuses" in summary


def test_problems_the_plan_leaves_out_are_named_before_it_starts(tmp_path):
    """A float32 run of a file with a --cfg=f64 block says which problems it leaves out and why;
    a file's skipped lines are warned of too, one line each kind."""
    path = _file(tmp_path, '--cfg=f64 ic3ih8oc4kh3n"d"\n--reset ic3ih8oc4kh3n"f"\nic3id4oc4kd3\n')
    with pytest.warns(UserWarning) as caught:
        chosen = Plan(suites=[str(path)], backends=["im2col"], threads=[1]).problems()
    assert [p.name for _, p in chosen] == ["f"]
    messages = [str(w.message) for w in caught]
    assert f"{path}: skipped 1 3-D descriptor(s) (convbench runs 1-D and 2-D) (first at {path}:3)" in messages
    assert any(m.startswith("1 problem(s) ask only for directions or dtypes outside this run and are left out: "
                            f"{path}/d") for m in messages)
