"""First look at speed: forward+backward median time of every backend on two conv layers.

A plain script, not the harness (that is ``convbench run``): float32, threads set explicitly for
BLAS and numba, one untimed warm-up call (numba compiles or loads its cache there), then repeats
until a time budget is spent. Slow backends get fewer rounds, never fewer than one; the table
says how many ran. Ratios are to the fastest backend, all measured in this one run.

    python scripts/time_backends.py --threads 2 --out results/first-timings.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import kernels

PROBLEMS = {  # name: (N, C, H, W, K, R, S, padding)
    "seed002 N4 C1 28x28 K3 5x5": (4, 1, 28, 28, 3, 5, 5, 0),
    "resnet N8 C64 56x56 K64 3x3 p1": (8, 64, 56, 56, 64, 3, 3, 1),
}


def forward_backward(be, x, w, b, dy, padding):
    _, ctx = be.conv2d_forward(x, w, b, padding=padding)
    be.conv2d_backward(dy, ctx)


def measure(be, problem, budget: float, max_rounds: int) -> list[float]:
    N, C, H, W, K, R, S, padding = problem
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C, R, S), dtype=np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    dy = rng.standard_normal((N, K, H + 2 * padding - R + 1, W + 2 * padding - S + 1), dtype=np.float32)
    forward_backward(be, x, w, b, dy, padding)  # warm-up: numba compiles (or loads its cache) here
    times: list[float] = []
    while not times or (sum(times) < budget and len(times) < max_rounds):
        start = time.perf_counter()
        forward_backward(be, x, w, b, dy, padding)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS and numba threads (default 2)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of repeats per measurement")
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args()

    import numba

    numba.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in threadpool_info())
        rows = {}
        for label, problem in PROBLEMS.items():
            for name in kernels.names():
                times = measure(kernels.get(name), problem, args.budget, args.max_rounds)
                rows[label, name] = (statistics.median(times), len(times))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "Forward+backward conv2d, float32, median of the rounds shown; ratio to the fastest in the same run.",
        f"Machine: {cpu}, {args.threads} threads (BLAS: {blas}; numba {numba.__version__}: {numba.get_num_threads()} threads); "
        f"numpy {np.__version__}, Python {platform.python_version()}.",
        "",
        "| problem | backend | median | rounds | x fastest |",
        "|---|---|---:|---:|---:|",
    ]
    for label in PROBLEMS:
        best = min(rows[label, name][0] for name in kernels.names())
        for name in kernels.names():
            median, rounds = rows[label, name]
            lines.append(f"| {label} | {name} | {median * 1e3:.3f} ms | {rounds} | {median / best:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
