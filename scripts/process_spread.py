"""What makes one process run a row at another speed than the next: each row measured by several
fresh processes, under conditions that each remove one suspect, and the spread between the
processes set beside the spread within each.

    python scripts/process_spread.py OUT.jsonl [--processes 8] [--quick]

A process warms the row up and takes 20 turns of about 50 ms (each turn on fresh copies of the
inputs at random offsets, as ``convbench run`` does), keeping each turn's fastest call; its speed is the median of
those. Each process first times the machine's calibration product on two threads
(``machine.calibrate``), the cores' joint speed as it starts: a process slower than the others
while the product was slower too met a state of the machine, not one of its own. The conditions:

- ``as run``: as ``convbench run`` measures (glibc's malloc thresholds fixed, numba and the BLAS
  told the thread count, every input copied to a random 16-byte offset within a page each turn by
  ``abworker.fresh_inputs``);
- ``1 thread``: the same on one thread;
- ``BLAS told only``: numba never told the thread count (threadpoolctl limits the BLAS only);
- ``BLAS threads sleep``: ``OPENBLAS_THREAD_TIMEOUT=4``, OpenBLAS's helper threads sleep at once
  after a call instead of spinning;
- ``plain copies``: the inputs copied each turn wherever the allocator puts them (convbench
  before it randomised the offsets).

One JSON line per row and condition goes to OUT.jsonl; ``scripts/docs_figures.py`` renders them
in docs/methodology.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROWS = [  # (suite, problem, backend, direction, threads, conditions)
    ("seeds", "seed003_conv2", "im2col", "forward", 2,
     ("as run", "1 thread", "BLAS told only", "BLAS threads sleep", "plain copies")),
    ("lenet5", "conv1", "numba", "forward", 2, ("as run", "plain copies")),
    ("seeds", "seed001_conv", "numba", "backward", 2, ("as run", "plain copies")),
]

CHILD = r'''
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from convbench.bench.abworker import fresh_inputs
from convbench.bench.machine import calibrate, steady_allocator
from convbench.bench import timing
from convbench.bench.suites import load_suite
import kernels

suite, name, backend, direction, threads, condition, turns, seconds = sys.argv[1:9]
threads, turns, seconds = int(threads), int(turns), float(seconds)
steady_allocator()
problem = next(p for p in load_suite(suite) if p.name == name)
be = kernels.get(backend)
base = problem.inputs("float32", 0)

def fresh():
    return {k: v.copy() for k, v in base.items()} if condition == "plain copies" else fresh_inputs(base)

machine_s = calibrate(2)["sgemm_threads_s"]  # the cores' joint speed as this process starts
limit = threadpool_limits(threads) if condition == "BLAS told only" else timing.threads(threads)
fastest = []
with limit:
    for turn in range(turns):
        arrays = fresh()
        ctx = problem.forward(be, arrays)[1] if direction == "backward" else None
        call = (lambda: problem.forward(be, arrays)) if direction == "forward" else (lambda: problem.backward(be, arrays, ctx))
        call()
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 3:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        fastest.append(min(times))
print(json.dumps({"fastest": fastest, "machine_s": machine_s}))
'''


def measure(row: tuple, condition: str, processes: int, turns: int, seconds: float) -> dict:
    suite, problem, backend, direction, threads, _ = row
    threads = 1 if condition == "1 thread" else threads
    env = {**os.environ, **({"OPENBLAS_THREAD_TIMEOUT": "4"} if condition == "BLAS threads sleep" else {})}
    speeds, within, machine = [], [], []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-c", CHILD, suite, problem, backend, direction, str(threads), condition,
                               str(turns), str(seconds)], capture_output=True, text=True, env=env, check=True)
        answer = json.loads(done.stdout)
        fastest = answer["fastest"]
        machine.append(answer["machine_s"])
        speeds.append(statistics.median(fastest))
        q1, _, q3 = statistics.quantiles(fastest, n=4)
        within.append((q3 - q1) / statistics.median(fastest))
    return {"row": f"{suite}/{problem} {backend} {direction}", "threads": threads, "condition": condition,
            "process_speeds_s": speeds, "machine_threads_s": machine, "max_over_min": max(speeds) / min(speeds),
            "between_cv": statistics.stdev(speeds) / statistics.mean(speeds),
            "within_relative_iqr": statistics.median(within)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the JSON-lines file to write (must not exist)")
    parser.add_argument("--processes", type=int, default=8, help="fresh processes per row and condition")
    parser.add_argument("--quick", action="store_true", help="2 processes, 3 short turns, the first row only")
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.error(f"{args.out} exists; choose another")
    processes, turns, seconds = (2, 3, 0.005) if args.quick else (args.processes, 20, 0.05)
    from convbench.bench.results import machine_metadata

    machine = machine_metadata()  # the machine and the commit, on every line
    with open(args.out, "w") as out:
        for row in ROWS[:1] if args.quick else ROWS:
            for condition in row[-1][:2] if args.quick else row[-1]:
                out.write(json.dumps({**measure(row, condition, processes, turns, seconds), "machine": machine}) + "\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
