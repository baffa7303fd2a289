"""The measuring scripts under scripts/ (their full runs are what made results/; their --quick
runs are in the docs' tests): each explains itself and refuses what it does not know."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.sh") if p.name != "quick.sh")  # quick.sh is sourced

pytestmark = pytest.mark.subprocess


@pytest.fixture(autouse=True)
def _bash():
    if shutil.which("bash") is None:
        pytest.skip("the scripts are bash")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_prints_the_scripts_header_and_exits_0(script, tmp_path):
    done = subprocess.run(["bash", str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and not done.stdout.startswith("#")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--quik", "-x", "--resume-from"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_an_unknown_option_is_named_and_nothing_is_made(script, option, tmp_path):
    done = subprocess.run(["bash", str(script), str(tmp_path / "out"), option], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"{script.name}: unknown option {option} (--help shows the usage)"
    assert list(tmp_path.iterdir()) == []
