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
    <!-- test: covered=SCRIPT -->         a line `bash S` of the block, where SCRIPT runs S too, is
                                          left to the block that runs SCRIPT (README's reproduce
                                          block runs measure_targets.sh): one run, not two

pip commands get ``--dry-run`` (they resolve, and install nothing over the package under test).
"""

from __future__ import annotations

import os
import re
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
  local quick args quick_flag run_budget run_scope step_budget train_budget pytest_budget overhead_budget
  source "$QUICK_SH"; quick_options --quick
  local extra=()
  case " $* " in
    *" --resume "*) ;;  # a saved plan keeps its own budgets
    *) case "${1:-}" in
         run|ab) extra=("${run_budget[@]}")
                 case " $* " in *" --match "*) ;; *) extra+=("${run_scope[@]}") ;; esac ;;
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


def _covered(line: str, directives: dict) -> bool:
    """Whether ``line`` is ``bash S ...`` with S run by the block's ``covered=`` script."""
    script = directives.get("covered")
    words = line.split("#", 1)[0].split()
    return bool(script) and len(words) >= 2 and words[0] == "bash" and words[1] in (ROOT / script).read_text()


def _script(code: str, directives: dict) -> str:
    code = "\n".join(": covered by the block that runs its script" if _covered(line, directives) else line
                     for line in code.splitlines())
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
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home), "MPLBACKEND": "Agg", "CONVBENCH_TUNING_CACHE": str(home / "tuning.json"),
            "PYTEST_ADDOPTS": PYTEST_ADDOPTS}


@pytest.mark.parametrize(("lang", "directives", "code"), blocks())
def test_the_block_runs_as_written(lang, directives, code, clone, tmp_path):
    if "skip" in directives:
        pytest.skip(directives["skip"])
    needs = directives.get("needs", "")
    if "torch" in needs:
        pytest.importorskip("torch", reason=f"needs PyTorch: {kernels.YARDSTICK_INSTALL}")
    if "mnist" in needs and not MNIST.is_dir():
        pytest.skip(f"needs the real MNIST folder at {MNIST}")
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
    """``covered=SCRIPT`` leaves out only lines SCRIPT runs, and some unskipped block runs SCRIPT."""
    found = blocks()
    for param in found:
        lang, directives, code = param.values
        if "covered" not in directives:
            continue
        covered = [line for line in code.splitlines() if _covered(line, directives)]
        assert covered, f"{param.id}: covered={directives['covered']} covers none of its lines"
        runners = [p.id for p in found if directives["covered"] in p.values[2] and "skip" not in p.values[1]]
        assert runners, f"{param.id}: no block runs {directives['covered']}"
