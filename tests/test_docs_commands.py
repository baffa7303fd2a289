"""Every command in README.md and docs/*.md runs, so that a recipe cannot rot.

Each ```sh block is one test: bash runs it as written, with ``set -e`` (a failing line fails the
test), in a fresh clone of this repository, with small budgets. The budgets are options that the
shell functions in SMALL append to each convbench and asv command (for convbench, those of the
measuring scripts' ``--quick``, scripts/quick.sh: tiny budgets on a few layers of each suite, the
layers only where a command names none with ``--match``), and pytest options in PYTEST_ADDOPTS
(argparse keeps the last of a repeated option); nothing else in a line changes, and no option is
appended to a command resuming a saved plan. Each ```python block runs too.
A comment just above a block tells what it needs, directives joined by "; ":

    <!-- test: needs=torch -->            run only where PyTorch is installed (mnist: where the
                                          real MNIST folder, ../shared/data/mnist-t10k, is)
    <!-- test: setup=COMMANDS -->         hidden preparation, such as the two runs a compare reads
    <!-- test: background=PREFIX|... -->  lines starting so are servers: started in the background
                                          and stopped when the block ends
    <!-- test: sub=FROM>TO,... -->        placeholders replaced (HOST>127.0.0.1), and the measuring
                                          scripts given --quick (scripts/quick.sh): the small
                                          budgets of every run they start
    <!-- test: skip=WHY -->               not run here; only for the set-up block, which .ci/run
                                          runs, as written, on a clean clone
    <!-- test: covered=SCRIPT -->         a line the block that runs SCRIPT runs too is left to
                                          it, where that block runs (its needs are met): one run,
                                          not two. Such a line is `bash S` with S named in SCRIPT
                                          (README's reproduce block runs measure_targets.sh), or
                                          `convbench CMD` with options that a `convbench CMD` line
                                          of SCRIPT gives too (a `$variable` there stands for any
                                          value; --out, --quiet and other arguments may differ)

pip commands get ``--dry-run`` (they resolve, and install nothing over the package under test).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import kernels

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MNIST = ROOT.parent / "shared" / "data" / "mnist-t10k"

SMALL = r"""
export QUICK_SH="$PWD/scripts/quick.sh"
convbench() {  # every convbench command at the budgets of the measuring scripts' --quick
  local quick args quick_flag run_budget report_budget run_scope step_budget train_budget pytest_budget overhead_budget sweep
  source "$QUICK_SH"; quick_options --quick
  local extra=()
  case " $* " in
    *" --resume "*) ;;  # a saved plan keeps its own budgets
    *) case "${1:-}" in
         run|ab) extra=("${run_budget[@]}")
                 case " $* " in *" --match "*|*" --model "*) ;; *) extra+=("${run_scope[@]}") ;; esac ;;
         step) extra=("${step_budget[@]}") ;;
         train) extra=("${train_budget[@]}") ;;
       esac ;;
  esac
  command convbench "$@" "${extra[@]}"
}
asv() {
  case "${1:-}" in run|continuous) command asv "$@" --quick ;; *) command asv "$@" ;; esac
}
pip() {
  case "${1:-}" in install) command pip "$@" --dry-run --quiet ;; *) command pip "$@" ;; esac
}
export -f convbench asv pip
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
"""
PYTEST_ADDOPTS = "-k 'seed002 and im2col' --benchmark-max-time=0.01 --benchmark-min-rounds=1 -p no:cacheprovider"

pytestmark = pytest.mark.docs


def blocks():
    """(page, line, language, directives, code) for every ```sh and ```python block."""
    found = []
    for page in PAGES:
        text = page.read_text()
        pattern = r"(?:<!-- test: (?P<directives>.*?) -->\n)?```(?P<lang>sh|python)\n(?P<code>.*?)```"
        for m in re.finditer(pattern, text, re.S):
            directives = dict(d.split("=", 1) for d in (m["directives"] or "").split("; ") if d)
            line = text.count("\n", 0, m.start("code"))
            found.append(pytest.param(m["lang"], directives, m["code"], id=f"{page.name}:{line}"))
    return found


def _unmet(directives: dict) -> str | None:
    """Why a block with these directives cannot run here, or None."""
    needs = directives.get("needs", "")
    if "torch" in needs and importlib.util.find_spec("torch") is None:
        return f"needs PyTorch: {kernels.YARDSTICK_INSTALL}"
    if "mnist" in needs and not MNIST.is_dir():
        return f"needs the real MNIST folder at {MNIST}"
    return None


def _lines(code: str) -> list[str]:
    """The block's or script's lines, continuation lines joined."""
    return code.replace("\\\n", " ").splitlines()


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # a quote that a later line closes
        return []


def _convbench(line: str) -> tuple[str, dict] | None:
    """(command, {option: value}) of a ``convbench`` line, without --out and --quiet."""
    words = _words(line)
    if len(words) < 2 or words[0] != "convbench":
        return None
    options, key = {}, None
    for word in words[2:]:
        if word.startswith("--"):
            key = word
            options[key] = None
        elif key is not None:
            options[key], key = word, None
    return words[1], {k: v for k, v in options.items() if k not in ("--out", "--quiet")}


def _covered(line: str, directives: dict) -> bool:
    """Whether ``line`` is run by the block that runs the ``covered=`` script, where it runs."""
    script = directives.get("covered")
    if not script or _unmet(_runner_of(script).values[1]):
        return False
    words = _words(line)
    if len(words) >= 2 and words[0] == "bash":
        return words[1] in (ROOT / script).read_text()
    mine = _convbench(line)
    return mine is not None and any(
        other[0] == mine[0] and all(k in other[1] and (other[1][k] == v or str(other[1][k]).startswith("$"))
                                    for k, v in mine[1].items())
        for other in _commands_of(script))


@functools.cache
def _commands_of(script: str) -> list[tuple[str, dict]]:
    """Every ``convbench`` command line of ``script`` (``_convbench``), read once."""
    return list(filter(None, map(_convbench, _lines((ROOT / script).read_text()))))


@functools.cache
def _runner_of(script: str):
    """The one unskipped block that runs ``script``."""
    runners = [p for p in blocks() if script in p.values[2] and "skip" not in p.values[1]]
    assert len(runners) == 1, f"blocks that run {script}: {[p.id for p in runners]}"
    return runners[0]


def _script(code: str, directives: dict) -> str:
    code = "\n".join(": covered by the block that runs its script" if _covered(line, directives) else line
                     for line in _lines(code))
    for pair in filter(None, directives.get("sub", "").split(",")):
        before, after = pair.split(">")
        code = code.replace(before, after)
    servers = tuple(filter(None, directives.get("background", "").split("|")))
    lines = []
    for line in code.splitlines():
        if servers and line.startswith(servers):
            command = re.split(r"\s+#", line, maxsplit=1)[0]
            line = f"{command} > /dev/null 2>&1 &"
        lines.append(line)
    setup = directives.get("setup", "")
    return "\n".join([SMALL, "set -euo pipefail", setup, *lines, ""])


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone of this repository at HEAD, as a reader of the docs would have it."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("the docs' commands run in a clone of this repository: it needs git and the checkout's .git")
    base = tmp_path_factory.mktemp("docs")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(base / "repo")], check=True)
    subprocess.run(["git", "-C", str(base / "repo"), "branch", "-q", "-f", "main", "HEAD"], check=False)
    if MNIST.is_dir():
        (base / "shared").symlink_to(ROOT.parent / "shared")
    return base / "repo"


def _environment(home: Path) -> dict:
    """A reader's environment; auto's tuning cache and the machine's probes are the session's
    (tests/conftest.py), shared as one machine's user shares them between commands."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home), "MPLBACKEND": "Agg", "PYTEST_ADDOPTS": PYTEST_ADDOPTS}


@pytest.mark.parametrize(("lang", "directives", "code"), blocks())
def test_the_block_runs_as_written(lang, directives, code, clone, tmp_path):
    if "skip" in directives:
        pytest.skip(directives["skip"])
    unmet = _unmet(directives)
    if unmet:
        pytest.skip(unmet)
    work = tmp_path / "repo"  # each block in its own copy of the clone: nothing one leaves behind feeds another
    shutil.copytree(clone, work, symlinks=True)
    if (clone.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    home = tmp_path / "home"
    home.mkdir()
    if lang == "python":  # run from HOME: it imports the installed package, as a user's script would
        command, cwd = [sys.executable, "-c", code], home
    else:
        command, cwd = ["bash", "-c", _script(code, directives)], work
    process = subprocess.Popen(command, cwd=cwd, env=_environment(home), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # servers a block started, and anything they left
        except ProcessLookupError:
            pass
    assert process.returncode == 0, f"exit {process.returncode}:\n{output[-6000:]}"


def test_every_block_is_found_and_the_set_up_block_is_the_only_one_skipped():
    found = blocks()
    assert len(found) >= 10
    skipped = [p.id for p in found if "skip" in p.values[1]]
    assert skipped == ["README.md:13"], skipped


def test_a_covered_line_is_run_by_the_block_that_runs_its_script():
    """``covered=SCRIPT`` leaves out only lines SCRIPT runs, and one unskipped block runs SCRIPT."""
    for param in blocks():
        lang, directives, code = param.values
        if "covered" not in directives:
            continue
        runner = _runner_of(directives["covered"])
        if _unmet(runner.values[1]):
            assert not any(_covered(line, directives) for line in _lines(code)), "covered where its runner cannot run"
            continue
        covered = [line for line in _lines(code) if _covered(line, directives)]
        assert covered, f"{param.id}: covered={directives['covered']} covers none of its lines"


@pytest.mark.parametrize("line, covered", [
    ("convbench run --suite seeds,lenet5,resnet18 --backends all --threads 2 --out runs/x", True),
    ("convbench report runs/x", True),
    ("convbench run --suite seeds --backends all --threads 2", False),  # another suite
    ("convbench run --suite seeds,lenet5,resnet18 --backends all --threads 1", False),  # another count
    ("convbench train --model seed002 --backend $b --iterations 2000 --holdout 2000", True),
    ("convbench train --model lenet5 --backend numba", False),
    ("convbench ab HEAD~1 HEAD", False),  # reproduce.sh runs no ab of its own
    ("bash scripts/measure_targets.sh", True),
    ("bash scripts/kill_resume.py", False),
])
def test_what_a_script_covers(line, covered, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_unmet", lambda directives: None)
    assert _covered(line, {"covered": "scripts/reproduce.sh"}) is covered
