"""Bad input, as classes: every command refuses it with one line naming the option or the file and
exit status 2, before it probes the machine (the probes are counted, not timed), whatever else
the machine is doing (the damaged-file cases also run beside a process that keeps a core busy)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import convbench
from convbench.bench import machine, probes, results
from convbench.bench.results import MEASUREMENTS, RunDirectory
from convbench.cli import main, parser
from convbench.cli.options import LIST_TYPES, NUMBER_TYPES

ROOT = Path(__file__).resolve().parents[1]
PROBES = (probes.remembered, machine.busy_warning, machine.calibrate, results.git_commit)


@pytest.fixture
def probed(monkeypatch) -> list[str]:
    """Every machine probe called, by name: the CPU's description and peaks, the busy check, the
    calibration workload and git. Each is replaced wherever a convbench module holds it."""
    calls: list[str] = []
    for found in pkgutil.walk_packages(convbench.__path__, "convbench."):  # none imported later, under the patch
        try:
            if found.name != "convbench.__main__":
                importlib.import_module(found.name)
        except ImportError:  # the PyTorch twin, where torch is not installed
            pass
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("convbench")]:
        for attr, value in list(vars(module).items()):
            if any(value is probe for probe in PROBES):
                monkeypatch.setattr(module, attr, lambda *a, _n=value.__name__, **k: calls.append(_n) or pytest.fail(
                    f"the machine was probed ({_n}) before the bad input was refused"))
    return calls


@pytest.fixture(params=["idle", "busy"])
def neighbour(request):
    """Nothing, or another process keeping one core busy for the test's length."""
    if request.param == "idle":
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def refused(capsys, *argv: str) -> str:
    """Run ``convbench ARGV``: exit status 2 and exactly one line on stderr, which is returned."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 2, (status, out[-2000:], err[-2000:])
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


POSITIONALS = {"report": ["no-such-run"], "targets": ["no-such-run", "--out", "t"], "compare": ["a", "b"],
               "ab": ["HEAD", "HEAD"]}


def _options(types) -> list:
    """(command, option, converter) for every option of every command whose type= is in ``types``."""
    found = []
    for command, sub in parser()._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.option_strings and getattr(action.type, "kind", None) in types:
                found.append(pytest.param(command, action.option_strings[0], action.type,
                                          id=f"{command}{action.option_strings[0]}"))
    return found


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e400", "99999999999999999999999", "x", ""])
@pytest.mark.parametrize("command, option, convert", _options(NUMBER_TYPES))
def test_every_number_option_refuses_what_is_not_a_bounded_number(capsys, probed, command, option, convert, value):
    err = refused(capsys, command, *POSITIONALS.get(command, []), f"{option}={value}")
    assert f"argument {option}:" in err


@pytest.mark.parametrize("command, option, convert", _options(LIST_TYPES))
def test_every_list_option_refuses_an_empty_item_and_a_repeat(capsys, probed, command, option, convert):
    item = convert.example
    for value in (f"{item},,{item}", f"{item},{item}", ","):
        if value == f"{item},{item}" and not convert.distinct:
            continue
        err = refused(capsys, command, *POSITIONALS.get(command, []), f"{option}={value}")
        assert f"argument {option}:" in err


def test_the_classes_cover_every_option_that_takes_a_number_or_a_list():
    """A new option with a bare int/float type would escape the two tests above."""
    for command, sub in parser()._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            assert action.type not in (int, float), f"{command} {action.option_strings}: use a converter of cli.options"


PLAN = {"suites": ["seeds"], "match": "^seed000_conv$", "backends": ["im2col", "numba"], "directions": ["forward"],
        "threads": [1], "rounds": 1}


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """A real small run (two rows), measured once for the module."""
    from convbench.bench.runner import Plan, Runner

    run = RunDirectory(tmp_path_factory.mktemp("measured") / "run")
    run.create(PLAN)
    Runner(Plan(**PLAN), run).execute()
    return run.path


@pytest.fixture
def small_run(measured, tmp_path) -> Path:
    """A copy of the real small run, this test's to damage."""
    return Path(shutil.copytree(measured, tmp_path / "run"))


DAMAGES = {  # what an outside tester did to one line -> what the one line must name
    "a time that is text": (lambda r: {**r, "median_s": "fast"}, "'median_s'"),
    "no backend": (lambda r: {k: v for k, v in r.items() if k != "backend"}, "'backend' is missing"),
    "an unknown status": (lambda r: {**r, "status": "bogus"}, "'status'"),
    "threads as a word": (lambda r: {**r, "threads": "two"}, "'threads'"),
    "a newer schema": (lambda r: {**r, "schema": 9}, "schema 9"),
    "a duplicated line": (lambda r: r, "repeats the measurement of line 1"),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("reader", ["report", "compare", "targets", "resume"])
def test_a_damaged_row_is_one_line_naming_file_line_and_field(small_run, tmp_path, capsys, probed, neighbour,
                                                               damage, reader):
    change, named = DAMAGES[damage]
    lines = (small_run / MEASUREMENTS).read_text().splitlines()
    first = json.loads(lines[0])
    damaged = change(first)
    (small_run / MEASUREMENTS).write_text("\n".join([lines[0], json.dumps(damaged), *lines[1:]]) + "\n")
    argv = {"report": ["report", str(small_run)], "compare": ["compare", str(small_run), str(small_run)],
            "targets": ["targets", str(small_run), "--out", str(tmp_path / "t")],
            "resume": ["run", "--resume", "--quiet", "--out", str(small_run)]}[reader]
    err = refused(capsys, *argv)
    assert f"{MEASUREMENTS}:2" in err and named in err


def test_a_torn_last_line_is_one_warning_line_without_its_source(small_run, capsys):
    with open(small_run / MEASUREMENTS, "a") as f:
        f.write('{"session": "abc", "suite": "le')
    assert main(["report", str(small_run), "--no-plots"]) == 0
    warning, wrote = capsys.readouterr().err.splitlines()  # the warning, then what report wrote
    assert warning.startswith("convbench: warning:") and "half-written last line" in warning
    assert wrote.startswith("convbench report: wrote")


BAD_OUTS = {
    "a file": lambda tmp: (tmp / "file").write_text("") or tmp / "file",
    "under a file": lambda tmp: (tmp / "file").write_text("") or tmp / "file" / "sub",
    "a folder no one may write": lambda tmp: Path("/proc/convbench-out"),
}
COMMANDS = {
    "run": ["run", "--suite", "seeds", "--match", "seed000_conv$", "--backends", "im2col", "--rounds", "1"],
    "step": ["step", "--model", "seed002", "--backends", "im2col", "--rounds", "1"],
    "train": ["train", "--iterations", "1", "--quiet"],
    "featuremaps": ["featuremaps"],
    "report": ["report", "RUN"],
    "targets": ["targets", "RUN"],
    "ab": ["ab", "HEAD", "HEAD", "--repo", str(ROOT), "--match", "seed000_conv$", "--backends", "im2col"],
}


@pytest.mark.parametrize("where", BAD_OUTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_output_folder_that_cannot_be_written_is_refused_first(small_run, tmp_path, capsys, probed, command,
                                                                      where):
    if command == "ab" and not (ROOT / ".git").exists():
        pytest.skip("ab needs this checkout's git repository")
    out = BAD_OUTS[where](tmp_path)
    argv = [str(small_run) if a == "RUN" else a for a in COMMANDS[command]]
    err = refused(capsys, *argv, "--out", str(out))
    assert f"--out {out}" in err


SUITES = {  # a suite file's text -> what the one line says
    "an H beyond 2**31 - 1": ("name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
                              "c1,conv2d,1,1,99999999999999999999999,8,2,3,3,1,0,1,1,1\n", "field 'H' must be between"),
    "a row with an extra field": ("name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
                                  "c1,conv2d,1,1,8,8,2,3,3,1,0,1,1,1,7\n", "15 fields where the header has 14"),
    "a row with a field missing": ("name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
                                   "c1,conv2d,1,1,8,8,2,3,3,1,0,1,1\n", "fewer fields where the header has 14"),
    "an empty file": ("", "holds no problem convbench can run"),
    "only comments": ("# nothing here\n", "holds no problem convbench can run"),
    "only float64 problems": ("--dt=f64 mb1ic1ih8oc1kh3\n", "outside --directions"),
    "only 3-D problems": ("ic3id4oc4kd3\n", "holds no problem convbench can run: skipped 1 3-D descriptor(s)"),
    "more memory than the machine's": ("name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"
                                       "c1,conv2d,1,1,4,4,1,1,1,1,100000,1,1,1\n", "GiB of memory per call"),
}


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("command", ["run", "ab"])
def test_a_suite_that_cannot_be_measured_as_written_is_refused_first(tmp_path, capsys, probed, suite, command):
    text, message = SUITES[suite]
    path = tmp_path / ("suite.csv" if text.startswith("name") else "suite.txt")
    path.write_text(text)
    head = ["run"] if command == "run" else ["ab", "HEAD", "HEAD", "--repo", str(ROOT)]
    if command == "ab" and not (ROOT / ".git").exists():
        pytest.skip("ab needs this checkout's git repository")
    err = refused(capsys, *head, "--suite", str(path), "--out", str(tmp_path / "out"))
    assert message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_a_fresh_run_held_by_another_process_says_so_without_resuming(tmp_path, capsys, probed):
    hold = ("import sys, time\nfrom filelock import FileLock\nlock = FileLock(sys.argv[1])\nlock.acquire()\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = refused(capsys, "run", "--match", "seed000_conv$", "--backends", "im2col", "--out", str(out))
        assert "being written by another convbench process" in err and "resum" not in err
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_ab_outside_a_repository_names_the_folder(tmp_path, capsys, probed):
    err = refused(capsys, "ab", "main", "HEAD", "--repo", str(tmp_path))
    assert f"--repo {tmp_path} is not a git repository" in err


def test_the_next_command_is_quoted_for_a_shell(tmp_path, capsys):
    out = tmp_path / "with space" / "run 1"
    assert main(["run", "--match", "^seed000_conv$", "--backends", "im2col", "--directions", "forward",
                 "--threads", "1", "--rounds", "1", "--quiet", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert shlex.split(line.split("Next: ", 1)[1]) == ["convbench", "report", str(out)]


def test_a_training_that_diverges_stops_with_one_line_and_exit_1(tmp_path, capsys):
    assert main(["train", "--lr", "1e6", "--iterations", "50", "--quiet", "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged at step" in err and "Warning" not in err


def test_train_refuses_a_folder_that_holds_a_run(small_run, capsys, probed):
    err = refused(capsys, "train", "--out", str(small_run))
    assert "holds a `convbench run` or `step` run" in err


def test_the_probe_counter_catches_a_probe(probed, tmp_path):
    """The fixture the tests above rely on does see a probe: a good run makes one at once."""
    with pytest.raises(pytest.fail.Exception, match="the machine was probed"):
        main(["run", "--match", "^seed000_conv$", "--backends", "im2col", "--threads", "1", "--rounds", "1",
              "--quiet", "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("plan", ["{", "[1]", '{"suites": ["seeds"], "budget": Infinity}', '{"suites": ["seeds"], "turns": 100000000}'])
def test_resuming_a_damaged_plan_is_refused_before_any_probe(small_run, capsys, probed, neighbour, plan):
    (small_run / "plan.json").write_text(plan)
    err = refused(capsys, "run", "--resume", "--quiet", "--out", str(small_run))
    assert "plan.json" in err
