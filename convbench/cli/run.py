"""``convbench run``: measure suites of problems on backends, here or on a Dask cluster."""

from __future__ import annotations

from convbench.cli.options import Defaults, plan_arguments

PLAN_OPTIONS = ("suite", "backends", "ops", "directions", "dtype", "threads", "match", "batch",
                "budget", "rounds", "turns", "window", "max_time", "processes", "strict")


def register(sub) -> None:
    run = sub.add_parser(
        "run", help="measure suites of problems on backends", formatter_class=Defaults,
        description="Measure every selected problem on every selected backend, dtype, thread count and "
                    "direction. Each measurement is checked against kernels.reference first, timed by "
                    "adaptive repeats (median, IQR), and appended to OUT/measurements.jsonl at once.")
    plan_arguments(run)
    run.add_argument("--out", metavar="DIR", help="run directory (created; must not hold a run unless --resume); "
                                                   "default runs/run-DATE-TIME")
    run.add_argument("--resume", action="store_true", help="finish the interrupted run in --out with its saved plan")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="measure on the workers of the Dask cluster whose scheduler is at ADDRESS "
                          "(tcp://HOST:8786; needs the cluster extra), one cell per machine at a time, "
                          "rows written here; without it, on this machine")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(execute=execute)


def plan_from(args):
    """The Plan the options ask for (the defaults where they are silent), its problems resolved."""
    from convbench.bench.runner import Plan

    given = {name: getattr(args, option) for name, option in (
        ("backends", "backends"), ("ops", "ops"), ("directions", "directions"), ("dtypes", "dtype"),
        ("threads", "threads"), ("match", "match"), ("batch", "batch"), ("budget", "budget"),
        ("rounds", "rounds"), ("turns", "turns"), ("window", "window"), ("max_time", "max_time"),
        ("processes", "processes"), ("strict", "strict"))}
    return Plan(suites=args.suite or ["seeds"], **{k: v for k, v in given.items() if v is not None})


def execute(args) -> int:
    from convbench.bench import runs
    from convbench.bench.runner import Plan
    from convbench.cli.options import UsageError

    given = [f"--{o.replace('_', '-')}" for o in PLAN_OPTIONS if getattr(args, o) is not None]
    if args.resume and given:
        raise UsageError(f"--resume finishes the plan saved in {args.out}/plan.json; drop {', '.join(given)}")
    try:
        plan = None if args.resume else plan_from(args).resolve()  # fails now if nothing matches
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    run = runs.out_folder(args.out, "run", args.resume)
    # an unusable cluster fails before anything is written; a suite edited since a resumed run was
    # planned is refused by the check
    with _cluster(args.scheduler) as client, runs.held(run, plan, "run", Plan, check=Plan.problems) as plan:
        return _measure(args, run, plan, client)


def _cluster(address: str | None):
    """A Dask client of the scheduler at ``address`` (closed afterwards), or None: an unusable
    cluster fails before anything is written."""
    from contextlib import closing, nullcontext

    if address is None:
        return nullcontext()
    from convbench.bench.cluster import connect

    return closing(connect(address))


def _measure(args, run, plan, client) -> int:
    """Measure the plan's pending rows with a progress bar, then say what the run holds."""
    from convbench.bench import runs
    from convbench.bench.machine import busy_warning
    from convbench.bench.runner import Runner, row_key
    from convbench.cli.options import machine_line, say
    from convbench.cli.progress import progress

    print(machine_line())
    busy = busy_warning()
    if busy:
        say(f"convbench run: warning: {busy}")
    kept = lambda: f"{len(run.rows())} measurements are kept in {run.path}; finish with: {runs.resume_hint('run', run)}"
    with progress(f"convbench run -> {run.path}", args.quiet, kept) as bar:
        runner = Runner(plan, run, lambda row: _row_done(bar, row), on_window=bar.set_postfix_str)
        pending = runner.pending()
        bar.reset(total=len(pending))
        failures = _execute(runner, client, lambda row: _row_done(bar, row))
    if failures:
        say(f"convbench run: {len(failures)} cell(s) failed on the cluster and stay pending (finish with: "
            f"{runs.resume_hint('run', run)}, with or without --scheduler):\n  " + "\n  ".join(failures))
    done = {row_key(r) for r in run.rows()}
    print(runs.summary(run, sum(key in done for key in pending)))
    runs.measured_something(run)
    return 1 if failures else 0


def _execute(runner, client, on_row) -> list[str]:
    if client is None:
        from convbench.bench.executors import execute

        execute(runner)
        return []
    from convbench.bench.cluster import run_on_cluster

    return run_on_cluster(runner, client, on_row)


def _row_done(bar, row: dict) -> None:
    bar.update(1)
    if row["status"] in ("wrong", "error"):
        bar.write(f"{row['suite']}/{row['problem']} {row['backend']} {row['direction']}: {row['status']}: {row['reason']}")
