"""What the cluster path costs per cell, measured: the same plan measured here and through a Dask
scheduler and one worker on this machine, in alternation, several times.

    python scripts/cluster_overhead.py results/cluster-overhead   # about a minute on 2 cores

Each repetition measures the plan's cells into a fresh temporary run directory, once in this
process (``Runner.measure``) and once on the worker (``run_on_cluster``), in alternating order.
The worker opened its session (its peaks) in a warm-up run first, and the local side's session is
opened outside its timing, so both sides time the cells alone. The overhead per cell is the
difference of the medians divided by the number of cells: scheduling, serialising the plan and
the problem out and the rows back, and the client's writing, which the local path also does.
Writes OUT/overhead.json and OUT/overhead.md (``--reports``: the latter again from the former).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convbench.bench.cluster import RESOURCE, connect, run_on_cluster
from convbench.bench.formats import duration
from convbench.bench.results import MACHINE_ENV, RunDirectory, machine_metadata
from convbench.bench.runner import Plan, Runner, windows

# window 0.01 s: every problem is a window of its own, so a cell here and a cell on the worker
# are the same measurement (with the same calibrations), one problem each
PLAN = dict(suites=["seeds"], backends=["im2col", "numba"], directions=["forward"], threads=[1], budget=0.05, turns=5,
            window=0.01)


def _cluster(port: int, log: Path) -> list[subprocess.Popen]:
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{port}"
    return [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             stdout=log.open("w"), stderr=subprocess.STDOUT),
            subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--resources", "machine=1", "--no-dashboard"],
                             env={**os.environ, MACHINE_ENV: "worker"}, stdout=log.open("a"), stderr=subprocess.STDOUT)]


def _connected(address: str, deadline: float):
    while True:
        try:
            return connect(address)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for overhead.json and overhead.md (created)")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of local and cluster; default 3")
    parser.add_argument("--match", metavar="REGEX", help="only the seeds' layers whose name matches, as convbench "
                        "run --match (--quick's few layers); default every layer")
    parser.add_argument("--reports", action="store_true", help="write OUT/overhead.md again from OUT/overhead.json")
    args = parser.parse_args()
    if args.reports:
        return rewrite(args.out)
    spec = {**PLAN, "match": args.match}
    plan = Plan(**spec).resolve()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args.out.mkdir(parents=True, exist_ok=True)
    processes = _cluster(port, Path(tempfile.gettempdir()) / f"convbench-cluster-{port}.log")
    times: dict[str, list[float]] = {"local": [], "cluster": []}
    try:
        client = _connected(f"tcp://127.0.0.1:{port}", time.monotonic() + 90)
        with tempfile.TemporaryDirectory() as scratch:
            def fresh(name: str) -> Runner:
                run = RunDirectory(Path(scratch) / name)
                run.create({})
                return Runner(plan, run)

            run_on_cluster(fresh("warm-up"), client)  # the worker opens its session and compiles
            runner = fresh("count")
            cells = len(windows(runner.groups(), plan.budget, plan.window))
            for repeat in range(args.repeats):
                for side in (("local", "cluster") if repeat % 2 == 0 else ("cluster", "local")):
                    runner = fresh(f"{side}-{repeat}")
                    if side == "local":
                        runner.open_session()
                        start = time.perf_counter()
                        runner.measure(runner.groups())
                    else:
                        start = time.perf_counter()
                        run_on_cluster(runner, client)
                    times[side].append(time.perf_counter() - start)
            round_trips = []  # an empty task's way through the scheduler to the worker and back
            for _ in range(50):
                start = time.perf_counter()
                client.submit(len, [], resources={RESOURCE: 1}, pure=False).result()
                round_trips.append(time.perf_counter() - start)
        client.close()
    finally:
        for process in processes:
            process.kill()
            process.wait()
    local, cluster = (statistics.median(times[k]) for k in ("local", "cluster"))
    meta = machine_metadata()
    result = {"plan": spec, "cells": cells, "seconds": times, "local_median_s": local, "cluster_median_s": cluster,
              "overhead_per_cell_s": (cluster - local) / cells, "empty_task_round_trips_s": round_trips, "cpu": meta["cpu"], "cores": meta["cores"],
              "git_commit": meta["git_commit"], "started": meta["started"]}
    (args.out / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "overhead.md").write_text(markdown(result, args.out))
    print((args.out / "overhead.md").read_text())
    return 0


def markdown(result: dict, out: Path) -> str:
    """overhead.md from what overhead.json holds."""
    times, cells, trips = result["seconds"], result["cells"], result["empty_task_round_trips_s"]
    difference = (result["cluster_median_s"] - result["local_median_s"]) / cells
    spread = max(max(v) - min(v) for v in times.values()) / cells
    match = result["plan"].get("match")
    return (
        f"# The cluster path's overhead per cell\n\n{result['cpu']}, {result['cores']} cores, commit "
        f"{result['git_commit']}, {result['started']}; `python scripts/cluster_overhead.py {out}`.\n\n"
        f"{cells} cells of one problem each (seeds{f' matching {match}' if match else ''}, im2col and numba, "
        f"forward, 1 thread, budget 0.05 s), {len(times['local'])} alternations:\n\n"
        f"| path | wall, median (range) | per cell |\n|---|---|---|\n"
        + "".join(f"| {label} | {duration(statistics.median(times[k]))} ({duration(min(times[k]))}-"
                  f"{duration(max(times[k]))}) | {duration(statistics.median(times[k]) / cells)} |\n"
                  for k, label in (("local", "here (Runner.measure)"), ("cluster", "scheduler + one worker on this machine")))
        + f"\nDifference of the medians: {'+' if difference >= 0 else '-'}{duration(abs(difference))} per cell, "
        f"{'within' if abs(difference) <= spread else 'beyond'} the widest spread of one side's repetitions "
        f"({duration(spread)} per cell). An empty task's round trip through the scheduler to the worker and back "
        f"({len(trips)} in a row): median {duration(statistics.median(trips))}, slowest {duration(max(trips))}.\n")


def rewrite(out: Path) -> int:
    """--reports: overhead.md written again from overhead.json, with this checkout's code."""
    (out / "overhead.md").write_text(markdown(json.loads((out / "overhead.json").read_text()), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
