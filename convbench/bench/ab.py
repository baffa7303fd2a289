"""``convbench ab REV_A REV_B``: two revisions of the kernels measured side by side, in turns.

Each revision is checked out in a temporary git worktree and driven by its own worker process
(``abworker``, which imports only that revision's ``kernels``). For every problem the two
workers take turns in pairs (``interleave.paired``: A then B, then B then A, ...), while the
other waits idle, so a machine that drifts during the session slows both alike and a change
of code is not confused with a change of machine. Both sides' outputs are checked against their
own revision's float64 reference before they are timed. Both workers and the driver count as
"ours" in the contention meter: the threads a worker leaves spinning after its turn slow the
other's next turn, but A goes first as often as B, so that cost falls on both sides alike.

The result is two ordinary run directories, ``OUT/a`` and ``OUT/b``, which ``convbench
compare`` (run at the end) and ``convbench report`` read like any other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from convbench.bench import abworker
from convbench.bench.executors import merge_rows
from convbench.bench.interleave import Entry, interleave, paired
from convbench.bench.machine import ALLOCATOR_ENV, CpuMeter, calibrate
from convbench.bench.results import RunDirectory, machine_metadata, make_row
from convbench.bench.runner import TOLERANCE, Plan
from kernels.quiet import quiesce

WORKER = Path(__file__).with_name("abworker.py")
SIDES = ("a", "b")


@dataclass(frozen=True)
class Step:
    """One training step of ``model`` at ``batch`` images, as ``convbench step`` measures it: in
    ab, each revision's own network code on its own kernels (rows of direction ``step``)."""

    model: str
    batch: int

    @property
    def name(self) -> str:
        return f"{self.model}-b{self.batch}"

    def row(self, direction: str) -> dict:
        return {"problem": self.name, "op": "train_step", "N": self.batch, "repeat": 1}

    def request(self) -> dict:
        return {"step": {"model": self.model, "batch": self.batch}}

    def directions(self, plan: Plan, dtype: str) -> list[str]:
        return ["step"]


class Layer:
    """A conv or pooling problem of the plan, in the form ``Step`` has."""

    def __init__(self, problem):
        self.problem, self.name = problem, problem.name

    def row(self, direction: str) -> dict:
        return {**self.problem.record(), "descriptor": self.problem.descriptor(), "flops": self.problem.flops(direction)}

    def request(self) -> dict:
        return {"problem": asdict(self.problem)}

    def directions(self, plan: Plan, dtype: str) -> list[str]:
        return [d for d in plan.directions if self.problem.wants(d, dtype)]


class AbError(Exception):
    """Something outside the measurement went wrong: a bad revision, a worker that would not start."""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AbError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    return done.stdout.strip()


def resolve(repo: Path, revision: str) -> str:
    """The full commit hash of ``revision`` in ``repo``, or AbError naming what is wrong: no
    git, a ``repo`` that is not a repository, or a revision that is not a commit of it."""
    try:
        _git(repo, "rev-parse", "--git-dir")
    except FileNotFoundError:
        raise AbError("convbench ab needs git, which is not on PATH") from None
    except AbError:
        raise AbError(f"--repo {repo} is not a git repository: run convbench ab inside one, or give --repo DIR") from None
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except AbError:
        raise AbError(f"{revision!r} is not a commit of the repository at {repo}") from None


@contextmanager
def worktrees(repo: Path, commits: list[str]) -> Iterator[list[Path]]:
    """Detached worktrees of ``commits`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="convbench-ab-"))
    made: list[Path] = []
    try:
        for side, commit in zip(SIDES, commits):
            path = folder / side
            _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            made.append(path)
        yield made
    finally:
        for path in made:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


class Worker:
    """One revision's worker process; ``ask`` sends a request and returns the answer."""

    def __init__(self, root: Path, log: Path, tuning: Path):
        self.log, self._ident = log, 0
        with open(log, "w") as err:  # auto's picks: one tuning cache per revision, shared by its workers
            self.process = subprocess.Popen([sys.executable, str(WORKER), str(root)], cwd=root, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                            env={**os.environ, **ALLOCATOR_ENV, "CONVBENCH_TUNING_CACHE": str(tuning)})
        hello = self._read()
        if not hello.get("ok"):
            raise AbError(f"the worker in {root} imported kernels from {hello.get('kernels')}, not from its revision")

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-2000:].strip() if self.log.exists() else ""
            raise AbError(f"a worker process ended unexpectedly (see {self.log}): {tail.splitlines()[-1] if tail else ''}")
        return json.loads(line)

    def next_id(self) -> int:
        """A new request id: the worker keeps what each setup made under its id."""
        self._ident += 1
        return self._ident

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write('{"op": "quit"}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def _slicer(worker: Worker, ident: int) -> Callable[[float, bool], list[float]]:
    def slice_(seconds: float, exact: bool) -> list[float]:
        answer = worker.ask({"op": "slice", "id": ident, "seconds": seconds, "exact": exact})
        if not answer["ok"]:
            raise RuntimeError(answer["reason"])
        return answer["times"]
    return slice_


def run_ab(repo: Path, revisions: tuple[str, str], plan: Plan, out: Path,
           on_group: Callable[[str], None] | None = None, steps: list[Step] | None = None) -> tuple[Path, Path]:
    """Measure ``plan`` (or, given ``steps``, those training steps with the plan's backends, dtypes,
    threads and budget) on both revisions in turns, by ``plan.processes`` pairs of workers (each
    pair its share of every row's turns and budget, a sample of the processes either revision can
    run in), the pairs taking their turns together; write ``out/a`` and ``out/b``; return them."""
    on_group = on_group or (lambda label: None)
    commits = [resolve(repo, r) for r in revisions]
    out.mkdir(parents=True, exist_ok=True)
    runs = [RunDirectory(out / side) for side in SIDES]
    for run, side, revision, commit in zip(runs, SIDES, revisions, commits):
        run.create({"command": "ab", "side": side, "revision": revision, "commit": commit, "plan": asdict(plan),
                    **({"steps": [asdict(step) for step in steps]} if steps else {})})
    with worktrees(repo, commits) as roots, _pairs(roots, out, plan.processes) as pairs:
        metadata = {**machine_metadata(), "allocator": ALLOCATOR_ENV}  # the workers' malloc thresholds
        sessions = [[run.start_session({**metadata, "git_commit": commit, "revision": revision, "worker": w.process.pid})
                     for run, revision, commit, w in zip(runs, revisions, commits, pair)] for pair in pairs]
        for threads, dtype, suite, problem in _groups(plan, steps):
            on_group(f"{suite}/{problem.name} {dtype} {threads}t")
            rows: dict[tuple, list[dict]] = {}
            for side, row in _measure_group(plan, pairs, runs, sessions, suite, problem, dtype, threads):
                rows.setdefault((side, row["backend"], row["direction"]), []).append(row)
            for (side, _, _), measured in rows.items():
                runs[SIDES.index(side)].append(merge_rows(measured))
        for threads in plan.threads:
            _calibrate(runs, sessions, threads)
    return runs[0].path, runs[1].path


@contextmanager
def _pairs(roots: list[Path], out: Path, count: int) -> Iterator[list[list[Worker]]]:
    """``count`` pairs of workers (A's and B's), closed afterwards. Each side's workers share a
    tuning cache of their own (OUT/tuning-a.json, -b.json): in one shared file, each revision's
    picks replaced the other's (their code differs), so every worker tuned afresh, and picked
    differently."""
    pairs: list[list[Worker]] = []
    try:
        for number in range(count):
            suffix = "" if count == 1 else str(number + 1)
            pairs.append([])
            for side, root in zip(SIDES, roots):
                pairs[-1].append(Worker(root, out / f"worker-{side}{suffix}.log", out / f"tuning-{side}.json"))
        yield pairs
    finally:
        for worker in (w for pair in pairs for w in pair):
            worker.close()


def _groups(plan: Plan, steps: list[Step] | None = None) -> Iterator[tuple]:
    """(threads, dtype, suite, what) for every training step of ``steps``, or else for every
    problem of the plan that asks for one of its directions (``what``: a ``Step`` or ``Layer``)."""
    targets = [("step", step) for step in steps] if steps else [(suite, Layer(p)) for suite, p in plan.problems()]
    for threads in plan.threads:
        for dtype in plan.dtypes:
            for suite, what in targets:
                if what.directions(plan, dtype):
                    yield threads, dtype, suite, what


def _calibrate(runs: list[RunDirectory], sessions: list[list[str]], threads: int) -> dict:
    """The calibration workload measured once and recorded in every pair's session of each side."""
    calibration = calibrate(threads)
    for pair_sessions in sessions:
        for run, session in zip(runs, pair_sessions):
            run.add_calibration(session, calibration)
    return calibration


def _measure_group(plan: Plan, pairs: list[list[Worker]], runs: list[RunDirectory], sessions: list[list[str]],
                   suite: str, problem, dtype: str, threads: int) -> list[tuple[str, dict]]:
    """One problem's rows from every pair of workers: (side, row) each, timed ones with a pair's
    share of the turns and the budget. The pairs take their turns together, one after another
    within each turn (A and B of a pair side by side), so that a state of the machine lasting
    seconds falls on every pair alike rather than on one pair's share."""
    calibration = _calibrate(runs, sessions, threads)
    entries, rows, timed = [], [], []  # timed: (entry, (session, base, setup fields)) of each side set up
    everyone = tuple(w.process.pid for workers in pairs for w in workers)
    for workers, pair_sessions in zip(pairs, sessions):
        for backend in plan.backends:
            for direction in problem.directions(plan, dtype):
                base = {"suite": suite, **problem.row(direction), "backend": backend, "dtype": dtype,
                        "threads": threads, "direction": direction, "calibration_s": calibration["index_s"]}
                pair = _setup_pair(plan, workers, pair_sessions, base, problem, rows, everyone)
                timed += pair
                if len(pair) == 1:  # the other side cannot run it: time this one alone
                    idle = Entry(("idle", backend, direction), lambda seconds, exact: [0.0])
                    pair.insert(SIDES.index(pair[0][0].key[0]) ^ 1, (idle, None))
                entries += [entry for entry, _ in pair]
    interleave(entries, plan.budget / plan.processes, _even(plan.process_turns()),
               exact=plan.rounds is not None, order=paired, between=lambda: _calibrate(runs, sessions, threads),
               settle=lambda: quiesce(pids=everyone), least=_even(plan.process_least()))
    return rows + [(entry.key[0], make_row(session, base, **_measured(entry, threads), **setup))
                   for entry, (session, base, setup) in timed]


def _setup_pair(plan: Plan, workers: list[Worker], sessions: list[str], base: dict, problem,
                rows: list, everyone: tuple[int, ...] = ()) -> list[tuple[Entry, tuple]]:
    """Both sides of one backend and direction set up and checked: (entry, (session, base, setup
    fields)) for each side that can be timed; a side that cannot gets its row (wrong, skipped,
    error) in ``rows``. Each setup waits until the pools of ``everyone`` (the workers) sleep:
    auto tunes there, and a side's BLAS pool left spinning made the other's numba calls wait
    scheduler slices (10 ms medians for 60 µs calls in its tuning, and wrong picks)."""
    pair = []
    for side, worker, session in zip(SIDES, workers, sessions):
        quiesce(pids=everyone)
        ident = worker.next_id()
        answer = worker.ask({"op": "setup", "id": ident, **problem.request(), "backend": base["backend"],
                             "dtype": base["dtype"], "threads": base["threads"], "direction": base["direction"],
                             "seed": plan.seed, "max_time": plan.max_time})
        if answer["ok"] and not answer["max_rel_err"] <= TOLERANCE[base["dtype"]]:
            answer = {"ok": False, "status": "wrong", "max_rel_err": answer["max_rel_err"],
                      "reason": f"max relative error {answer['max_rel_err']:.3g} "
                                f"against kernels.reference; tolerance {TOLERANCE[base['dtype']]:g}"}
        if answer["ok"] and answer["first_s"] > plan.max_time:
            answer = {"ok": False, "status": "skipped",
                      "reason": f"the first call took {answer['first_s']:.1f} s; over --max-time"}
        if answer["ok"]:
            meter = CpuMeter(pids=[w.process.pid for w in workers] + [os.getpid()])
            entry = Entry((side, base["backend"], base["direction"]), _slicer(worker, ident), meter)
            pair.append((entry, (session, base, {"max_rel_err": answer["max_rel_err"], "first_call_s": answer["first_s"]})))
        else:
            failure = {k: answer[k] for k in abworker.FAILURE_FIELDS if k in answer}
            rows.append((side, make_row(session, base, **failure)))
    return pair


def _even(turns: int) -> int:
    return turns + turns % 2


def _measured(entry: Entry, threads: int) -> dict:
    if entry.error is not None:
        return {"status": "error", "reason": f"{type(entry.error).__name__}: {entry.error}"}
    return {"status": "ok", **entry.summary(), **entry.meter.record(threads)}
