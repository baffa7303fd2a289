"""`pytest --benchmark-only` works (a quick smoke in every test run), and report and compare read its
--benchmark-json output directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convbench.bench.results import load_results
from convbench.cli import main

TESTS = Path(__file__).parent

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "benchmarks"), "-p", "no:cacheprovider", "--benchmark-only",
         "-k", "lenet5/conv1 and forward and (im2col or numba)", "--benchmark-max-time=0.05",
         "--benchmark-min-rounds=3", f"--benchmark-json={out}", "-q"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout
    return out


def test_benchmark_json_loads_as_measurement_rows(benchmark_json):
    frame = load_results(benchmark_json)
    assert len(frame) == 4 and set(frame.backend) == {"im2col", "numba"}
    assert set(frame.direction) == {"forward", "forward+backward"} and set(frame.problem) == {"conv1"}
    assert (frame.gflops > 0).all() and (frame["calls"] >= 3).all()


def test_report_and_compare_read_benchmark_json(benchmark_json, capsys):
    assert main(["report", str(benchmark_json)]) == 0
    report = benchmark_json.parent / "bench-report" / "report.md"
    assert "## lenet5 (float32" in report.read_text()
    assert "None" not in report.read_text().split("## ")[0]  # the machine named in full: BLAS, versions
    assert main(["compare", str(benchmark_json), str(benchmark_json)]) == 0
    out = capsys.readouterr().out
    assert "4 measurements compared: " in out and "0 regression(s)" in out and "slower" not in out


def test_a_json_that_is_not_from_pytest_benchmark(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"results": []}')
    assert main(["report", str(other)]) == 2
    assert "is not a pytest-benchmark JSON file" in capsys.readouterr().err


STATS = '{"median": 0.001, "iqr": 0.0001, "min": 0.0009, "rounds": 5}'


@pytest.mark.parametrize("content", [
    "42", "null", "[]", '"text"', '{"benchmarks": null}', '{"benchmarks": [42]}', '{"benchmarks": [{}]}',
    '{"benchmarks": [{"stats": {"median": "x", "iqr": 0, "min": 1, "rounds": 1}}]}',
    '{"benchmarks": [{"stats": {"median": 0, "iqr": 0, "min": 0, "rounds": 1}}]}',
    '{"benchmarks": [{"stats": {"median": NaN, "iqr": 0, "min": 1, "rounds": 1}}]}',
    '{"benchmarks": [{"stats": ' + STATS[:-1] + ', "data": ["a"]}}]}',
    '{"benchmarks": [{"stats": ' + STATS + ', "extra_info": 7}]}',
    "[" * 100_000, "\x00\xff garbage", "{" + "x" * 1_000_000,
])
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_malformed_benchmark_file_is_one_line_naming_it(tmp_path, capsys, content, command):
    bad = tmp_path / "bad.json"
    bad.write_text(content, errors="surrogateescape")
    args = ["report", str(bad)] if command == "report" else ["compare", str(bad), str(bad)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and err.count("\n") == 1 and len(err) < 600
