"""``convbench run --scheduler ADDRESS``: a plan's cells measured on the workers of a Dask cluster.

A *cell* is one window of the plan (``runner.windows``): consecutive groups (one problem, dtype
and thread count each, with every backend and direction still pending for it) whose timing
budgets add up to about ``--window`` seconds, measured in turns together exactly as a local run
measures them. So the backends of a problem are always timed side by side on one machine, each
problem is checked against the reference on the machine that times it, and a cluster run is
measured the way a local run is, window for window.

One cell at a time per machine: every cell asks for the worker resource ``machine=1``, and a
machine's worker offers exactly one (``dask worker ADDRESS --nthreads 1 --resources machine=1``).
A machine whose worker offered more, or two workers on one machine, would time cells against
each other; the cluster's own bookkeeping (heartbeats, the scheduler's messages) is the only
other work a worker does while it measures.

The client is the only writer. A cell's rows, its calibrations and its worker's session come back
to the client, which appends them to the run directory as a local run does (one JSON line each,
synced), so ``--resume`` works unchanged, with the cluster or without it. A worker that dies
mid-cell returns nothing: Dask runs the cell again elsewhere, and its rows are written once.
This module imports Dask (the ``cluster`` extra) only when called.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from convbench.bench.errors import InputError
from convbench.bench.executors import measure_cell
from convbench.bench.results import RunDirectory, git_commit
from convbench.bench.runner import Runner, window_label, windows

RESOURCE = "machine"  # each cell takes one; each machine's worker offers one
CONNECT_TIMEOUT = 10  # seconds to reach the scheduler, then to see a worker offering the resource
WORKER_COMMAND = "dask worker {address} --nthreads 1 --resources machine=1"


class ClusterError(InputError):
    """A cluster that cannot take the run: unreachable, without workers, or running other code."""


def cell_key(cell: list[tuple]) -> str:
    """A Dask task key naming the cell by its first problem (readable on the dashboard, unique
    within a plan)."""
    (suite, name, dtype, threads), _ = cell[0]
    digest = hashlib.sha1(json.dumps(cell).encode()).hexdigest()[:8]
    more = f"+{len(cell) - 1}" if len(cell) > 1 else ""
    return f"convbench-{name}{more}-{dtype}-{threads}t-{digest}"


def connect(address: str):
    """A Dask client of the scheduler at ``address``, with at least one worker offering
    ``machine=1``; ClusterError saying what to do otherwise."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs Dask's distributed package: pip install -e \".[cluster]\"") from None

    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"--scheduler {address}: cannot reach a Dask scheduler there ({exc}); "
                           f"start one with `dask scheduler` and give its tcp:// address") from None
    deadline = time.monotonic() + CONNECT_TIMEOUT  # workers started with the scheduler may still be joining
    while True:
        workers = client.scheduler_info()["workers"]
        offering = any(w.get("resources", {}).get(RESOURCE, 0) >= 1 for w in workers.values())
        if offering or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not offering:
        client.close()
        raise ClusterError(f"--scheduler {address}: no worker offers the resource {RESOURCE}=1 "
                           f"({len(workers)} worker(s) connected); start one per machine with: "
                           + WORKER_COMMAND.format(address=address))
    return client


def run_on_cluster(runner: Runner, client, on_row: Callable[[dict], None] = lambda row: None) -> list[str]:
    """Measure ``runner``'s pending cells on the cluster of ``client`` (see ``connect``) and write
    their rows into ``runner.run``; returns one line per cell that could not be measured (left
    pending: a ``--resume`` measures it again)."""
    from distributed import as_completed

    run: RunDirectory = runner.run
    groups = runner.groups()
    if not groups:
        return []
    problems = dict(((s, p.name), p) for s, p in runner.plan.problems())
    ours = git_commit()
    failures = []
    cells = windows(groups, runner.plan.budget, runner.plan.window)
    futures = {client.submit(measure_cell, runner.plan, cell, {g[:2]: problems[g[:2]] for g, _ in cell},
                             key=cell_key(cell), resources={RESOURCE: 1}, pure=False): cell
               for cell in cells}
    sessions = {s["session"] for s in run.sessions()}
    left = len(futures)
    runner.on_row = on_row
    for future in as_completed(futures, loop=client.loop):
        cell, left = futures[future], left - 1
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 -- a cell that failed on its worker stays pending
            names = ", ".join(f"{suite}/{name}" for (suite, name, _, _), _ in cell)
            failures.append(f"{names} ({cell[0][0][2]}, {cell[0][0][3]} thread(s)): {type(exc).__name__}: {exc}")
            continue
        finally:
            future.release()
        for session in result["sessions"]:
            if session["session"] not in sessions and session.get("git_commit") != ours:
                raise ClusterError(f"worker {session.get('worker')} runs convbench {session.get('git_commit')}, "
                                   f"this client {ours}: install the same commit on every worker "
                                   f"(rows measured so far are kept; finish with --resume)")
            sessions.add(session["session"])
        machine = result["sessions"][0].get("machine")
        runner.on_window(f"{left} cell(s) left; last from {machine}: {window_label(cell)}")
        runner.write(result)
    return failures
