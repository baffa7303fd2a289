"""``convbench list``: the backends (and why one is missing here), the suites and the ops."""

from __future__ import annotations

import kernels


def register(sub) -> None:
    sub.add_parser("list", help="backends (with availability), suites and ops").set_defaults(execute=execute)


def execute(args) -> int:
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
