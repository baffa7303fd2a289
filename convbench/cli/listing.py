"""``convbench list``: the backends (and why one is missing here), the suites and the ops."""

from __future__ import annotations

import kernels


def register(sub) -> None:
    from convbench.cli.options import names, whole

    listing = sub.add_parser("list", help="backends (with availability), suites and ops; or a suite's problems",
                             description="Without --suite: the backends (and why one is missing here), the shipped "
                                         "suites and the ops. With --suite: each problem as convbench reads it "
                                         "(a benchdnn file's padding on each side, the output size, the repeat "
                                         "count, the directions and data types it asks for), and what it skips.")
    listing.add_argument("--suite", type=names("--suite", example="seeds"),
                         help="comma-separated suite names or paths (a suite CSV or a benchdnn file) to list")
    listing.add_argument("--batch", type=whole("--batch"), metavar="N", help="override every problem's batch size")
    listing.add_argument("--format", choices=("table", "csv"), default="table", help="a table, or CSV; default table")
    listing.set_defaults(execute=execute)


def _problems(args) -> int:
    """Each problem of --suite as read, then one line per kind of line it skips (to stderr)."""
    import pandas as pd

    from convbench.bench.suites import read_suite
    from convbench.cli.options import say

    rows, notes = [], []
    for suite in args.suite:
        reading = read_suite(suite, args.batch)
        notes += [f"{suite}: {line}" for line in reading.lines()]
        rows += [{"suite": suite, **_row(p)} for p in reading.problems]
    frame = pd.DataFrame(rows)
    print(frame.to_csv(index=False) if args.format == "csv" else frame.to_markdown(index=False), end="" if
          args.format == "csv" else "\n")
    for note in notes:
        say(note)
    return 0


def _row(p) -> dict:
    top, bottom, left, right = p.sides
    return {"problem": p.name, "op": p.op, "N": p.N, "C": p.C, "H": p.H, "W": p.W, "K": p.K, "R": p.R, "S": p.S,
            "stride": f"{p.stride[0]}x{p.stride[1]}", "padding (t,b,l,r)": f"{top},{bottom},{left},{right}",
            "output": f"{p.out_h}x{p.out_w}", "dilation": f"{p.dilation[0]}x{p.dilation[1]}", "groups": p.groups,
            "repeat": p.repeat, "directions": ",".join(p.directions) or "all", "dtypes": ",".join(p.dtypes) or "all"}


def execute(args) -> int:
    if args.suite:
        return _problems(args)
    from convbench.bench.problems import OPS
    from convbench.bench.suites import load_suite, suite_names

    print("Backends (and outside yardsticks):")
    for name, reason in kernels.available(include_yardsticks=True).items():
        optional = f" (optional: {kernels.YARDSTICK_INSTALL})" if name in kernels.yardsticks() else ""
        description = kernels.get(name).description if reason is None else f"not available here: {reason}{optional}"
        print(f"  {name:<14} {description}")
    print("\nSuites (convbench run --suite NAME, or a path to a suite CSV or benchdnn file):")
    for name in suite_names():
        problems = load_suite(name)
        ops = sorted({p.op for p in problems})
        print(f"  {name:<14} {len(problems):>3} problems ({', '.join(ops)})")
    print(f"\nOps: {', '.join(OPS)}")
    return 0
