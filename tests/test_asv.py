"""The asv suite cannot rot: it imports and checks, and a quick run of part of it completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hiding import without

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.asv


def asv(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "asv", *args]
    # asv keeps its machine file in ~/.asv-machine.json: a temporary HOME leaves the user's alone
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": str(home)})


def test_asv_checks_the_suite(tmp_path):
    """asv's own check of every benchmark's signature and setup (docs/benchmarking.md's asv block,
    run by tests/test_docs_commands.py, runs the suite itself)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("asv measures commits: it needs git and this repository's git checkout (a copy without .git has none)")
    check = asv("check", "-E", f"existing:{sys.executable}", home=tmp_path)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]


def test_the_benchmarks_import_on_a_commit_that_lacks_newer_modules():
    """asv runs today's benchmarks/ against old commits: a module those lack (the CNN package,
    kernels.auto) must turn into skipped benchmarks, not an ImportError for the whole suite."""
    code = ("sys.path.insert(0, '.')\n"
            "from benchmarks import bench_conv, bench_pool, bench_train\n"
            "try:\n"
            "    bench_train.TrainStep().setup('im2col', 'seed002-b4')\n"
            "except NotImplementedError as exc:\n"
            "    assert 'no training step' in str(exc)\n"
            "else:\n"
            "    raise SystemExit('TrainStep ran without the CNN package')\n")
    done = without(("convbench.cnn", "kernels.auto"), code, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
