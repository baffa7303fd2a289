"""``convbench compare``: per-measurement ratios of two runs, with a statistical verdict."""

from __future__ import annotations

from convbench.cli.options import threshold


def register(sub) -> None:
    comp = sub.add_parser("compare", help="per-measurement ratios of two runs, with a statistical verdict",
                          description="Compare NEW with OLD measurement by measurement: the ratio of their "
                                      "fastest calls (each process's fastest, geometric mean over the processes "
                                      "that measured the row) with a 95 % interval over those processes, the "
                                      "ratio of medians beside it, and a verdict: faster or slower (the whole "
                                      "interval beyond --threshold, with at least 3 processes a side), same "
                                      "(within it) or inconclusive (too noisy, too few processes, contended, or "
                                      "no larger than the machine's own drift, which the calibration workload "
                                      "measures). Exit "
                                      "status 1 for a significant slowdown beyond --threshold (or a result "
                                      "that became wrong), 2 for bad input, 0 otherwise. OLD and NEW are run "
                                      "directories or pytest-benchmark JSON files.")
    comp.add_argument("old", metavar="OLD", help="the baseline run directory")
    comp.add_argument("new", metavar="NEW", help="the run directory to judge")
    comp.add_argument("--threshold", type=threshold, default=0.10,
                      help="the smallest change worth a verdict: slower means the interval lies above 1 + THRESHOLD "
                           "(a number from 0 to 10; default 0.10)")
    comp.add_argument("--across-machines", action="store_true",
                      help="compare rows measured on different machines (one machine on each side); "
                           "refused by default, since the difference would be the machines' as much as the code's")
    comp.set_defaults(execute=execute)


def execute(args) -> int:
    return compared(args.old, args.new, args.threshold, args.across_machines)


def compared(old, new, threshold: float, across_machines: bool = False) -> int:
    """Print compare's report of NEW against OLD; exit status 1 on a regression, else 0."""
    from convbench.bench.compare import compare
    from convbench.cli.options import UsageError, say

    try:
        table, regressions = compare(old, new, threshold=threshold, across_machines=across_machines)
    except (ValueError, OSError) as exc:  # unreadable or unmatched inputs: a usage error
        raise UsageError(f"compare: {exc}") from None
    print(table)
    if regressions:
        say(f"{regressions} measurement(s) significantly slower by more than {threshold:.0%}")
        return 1
    return 0
