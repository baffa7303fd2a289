"""``convbench step``: the full training step of a model, timed per backend and split by layer kind."""

from __future__ import annotations

from convbench.bench import limits
from convbench.cli.options import model_defaults, names, seconds, whole, wholes
from convbench.cnn.models import MODELS


def register(sub) -> None:
    from convbench.bench.runner import known_backends

    st = sub.add_parser(
        "step", help="time the full training step of a model per backend",
        description="Time forward (with the loss), backward and the SGD update of a model's training step on "
                    "each backend, and the time in conv, pool, dense and other layers. Each backend's first "
                    "step is checked against the float64 reference's loss. The backends take turns, each "
                    "turn a tenth of --budget, so drift during the run falls on all alike. Writes a run "
                    "directory that `convbench report` and `compare` read.")
    add = st.add_argument
    add("--model", type=names("--model", lambda: list(MODELS), example="lenet5"), default=["lenet5"],
        help=f"comma-separated: {', '.join(MODELS)} (default lenet5)")
    add("--batch-size", type=wholes("--batch-size", distinct=False), help=f"comma-separated, one per model (default: {model_defaults('batch_size')})")
    add("--backends", type=names("--backends", known_backends, every="all", example="im2col"),
        help="comma-separated backends, or all (with torch where installed); default all")
    add("--threads", type=wholes("--threads"), help="comma-separated thread counts (BLAS, numba, torch), e.g. 1,2; default all cores")
    add("--dtype", default="float32", choices=["float32", "float64"])
    add("--budget", type=seconds("--budget"), default=2.0, help="seconds of steps per backend (default 2), in 10 interleaved turns")
    add("--rounds", type=whole("--rounds", 1, limits.MAX_ROUNDS), help="exactly N turns of one plain and one instrumented step each instead")
    add("--max-time", type=seconds("--max-time"), metavar="SECONDS",
        help="skip a backend whose step takes longer (naive estimated from steps on fewer images first); default 10")
    add("--processes", type=whole("--processes", 1, limits.MAX_PROCESSES), metavar="N",
        help="measure each model's steps in N fresh worker processes, one after another, each with its share of "
             "the budget and the rounds: a process's own speed (its arrays' layout, its thread pools) becomes a "
             "sample; default 3, or $CONVBENCH_PROCESSES")
    add("--out", metavar="DIR", help="run directory; default runs/step-DATE-TIME")
    add("--resume", action="store_true", help="finish an interrupted step run in --out")
    add("--quiet", action="store_true", help="no progress bar")
    st.set_defaults(execute=execute)


def _plan(args):
    """The StepPlan the options ask for; None with --resume (the saved one is carried out)."""
    from convbench.cli.options import UsageError
    from convbench.cnn.step import StepPlan

    if args.resume:
        return None
    given = {"backends": args.backends, "threads": args.threads, "max_time": args.max_time, "processes": args.processes}
    try:
        return StepPlan(models=args.model, batches=args.batch_size, dtype=args.dtype, budget=args.budget,
                        rounds=args.rounds, **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def execute(args) -> int:
    from convbench.bench import runs
    from convbench.cli.options import machine_line
    from convbench.cli.progress import progress
    from convbench.cnn.step import PARTS, StepPlan, run_steps

    plan = _plan(args)
    run = runs.out_folder(args.out, "step", args.resume)
    with runs.held(run, plan, "step", StepPlan) as plan:
        print(machine_line())
        kept = lambda: (f"{len(run.rows())} measurements are kept in {run.path} (a model's backends are written "
                        f"together when its turns end); finish with: {runs.resume_hint('step', run)}")
        total = len(plan.pairs()) * len(plan.backends) * len(PARTS) * len(plan.threads)
        with progress("convbench step", args.quiet, kept, total=total) as bar:
            run_steps(run, plan.pairs(), plan.backends, plan.threads, plan.dtype, plan.budget, plan.rounds,
                      lambda row: _row_done(bar, row), plan.max_time, plan.processes, bar.set_postfix_str)
    print(runs.report_hint(run))
    runs.measured_something(run)
    return 0


def _row_done(bar, row: dict) -> None:
    bar.update(1)
    if row["direction"] == "step":
        what = (f"{row['median_s'] * 1e3:.3f} ms per step" if row["status"] == "ok"
                else f"{row['status']}: {row['reason']}")
        bar.write(f"{row['problem']} {row['backend']} ({row['threads']} thread(s)): {what}")
