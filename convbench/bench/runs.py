"""Where a measuring command's results go, and how it starts, resumes and sums up a run
directory: the parts ``convbench run``, ``step`` and ``ab`` share. Everything here reads or
checks files only; nothing probes the machine, so a bad folder is refused before any work."""

from __future__ import annotations

import shlex
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from convbench.bench.errors import InputError, clip
from convbench.bench.results import RunDirectory, RunError


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, once a folder can be made or written there: InputError naming
    ``option`` when ``path`` is a file, lies under a file, or its nearest existing folder
    refuses a file (read-only, immutable, no space). Creates nothing."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at last
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, a file"
        raise InputError(f"{option} {path} {where}, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})") from None
    return path


def default_out(command: str) -> Path:
    """A fresh ``runs/COMMAND-DATE-TIME`` (``-2``, ``-3`` ... when two start in one second)."""
    base = Path("runs") / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"
    return next(p for n in range(1, 10_000) if not (p := base.with_name(f"{base.name}-{n}") if n > 1 else base).exists())


def out_folder(out: str | None, command: str, resume: bool) -> RunDirectory:
    """The run directory a ``run``/``step`` writes: ``--out``, else a fresh default; a resume
    needs the one it finishes named and existing, a new run a folder it can write."""
    if resume:
        if out is None:
            raise InputError(f"--resume needs --out DIR: the {'' if command == 'run' else command + ' '}run directory to finish")
        run = RunDirectory(out)
        if not run.exists:
            raise InputError(f"--resume: {out} holds no {'' if command == 'run' else command + ' '}run to finish (no plan.json)")
        return run
    run = RunDirectory(writable_folder(out if out is not None else default_out(command)))
    if run.exists:
        raise InputError(f"{run.path} already holds a run; finish it with --resume or choose another --out")
    return run


@contextmanager
def held(run: RunDirectory, plan, command: str, kind: Callable[..., object],
         check: Callable[[object], object] = lambda plan: None) -> Iterator[object]:
    """Hold ``run`` for this process and yield the plan it carries out: ``plan`` (a dataclass),
    saved in a new run, or (``plan=None``) the one saved there before, rebuilt by ``kind`` and
    passed to ``check`` (a suite edited since, say, raises ValueError). The saved plan and the
    rows are read and checked here, before anything probes the machine."""
    from dataclasses import asdict

    with run.lock(resuming=plan is None):
        saved = run.begin(None if plan is None else asdict(plan), command)
        try:
            carried = kind(**saved)
        except (TypeError, ValueError) as exc:
            raise RunError(f"{run.path}/plan.json does not hold a valid plan ({clip(str(exc))}); "
                           "start a new run in another folder") from None
        if plan is None:
            try:
                check(carried)
            except ValueError as exc:
                raise RunError(f"--resume: {exc}") from None
        run.rows()  # a damaged row fails here, before the machine is probed
        yield carried


def summary(run: RunDirectory, measured_now: int) -> str:
    """The line a measuring command ends with: what it measured, what the run holds, and the
    command that reports it (quoted for a shell)."""
    rows = run.rows()
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["status"] for r in rows).items())) or "nothing"
    marks = [f"{sum(bool(r.get(flag)) for r in rows)} {flag}" for flag in ("noisy", "contended")
             if any(r.get(flag) for r in rows)]
    return (f"{measured_now} measured now; {run.path} holds {statuses}"
            + (f" ({', '.join(marks)}: marked in the report)" if marks else "")
            + f". {report_hint(run)}")


def report_hint(run: RunDirectory) -> str:
    return f"Next: convbench report {shlex.quote(str(run.path))}"


def measured_something(run: RunDirectory) -> None:
    """Nothing, when at least one row is ok; else NothingMeasured (a run that timed nothing is a
    failure, whatever the reasons in its rows)."""
    if not any(r["status"] == "ok" for r in run.rows()):
        raise NothingMeasured(f"nothing was measured: every row in {run.path} is wrong, error, skipped or unavailable")


def resume_hint(command: str, run: RunDirectory) -> str:
    return f"convbench {command} --resume --out {shlex.quote(str(run.path))}"


class NothingMeasured(Exception):
    """A measuring command that ended with no measurement ok: exit status 1."""
