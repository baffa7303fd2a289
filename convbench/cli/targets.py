"""``convbench targets``: the performance targets against PyTorch and the SGEMM peak, met or not."""

from __future__ import annotations


def register(sub) -> None:
    tg = sub.add_parser("targets", help="the performance targets against PyTorch and the SGEMM peak, met or not",
                        description="Read run directories (convbench run / step with torch among the "
                                    "backends) and write OUT/targets.md, .csv and .png: per target, problem and "
                                    "thread count, our fastest backend over PyTorch (or % of the SGEMM peak, or "
                                    "numba's first step), and whether the target is met. Measures nothing.")
    tg.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    tg.add_argument("--out", required=True, metavar="DIR", help="where the table and plot go")
    tg.set_defaults(execute=execute)


def execute(args) -> int:
    from convbench.bench.targets import write_targets

    summary, written = write_targets(args.runs, args.out)
    print(summary)
    print("\n".join(str(p) for p in written))
    return 0
