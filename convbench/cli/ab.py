"""``convbench ab``: two git revisions measured side by side, in turns, and compared."""

from __future__ import annotations

import re
from pathlib import Path

from convbench.cli.options import Defaults, names, plan_arguments, threshold
from convbench.cnn.models import MODELS

LAYER_OPTIONS = ("suite", "ops", "directions", "match")  # what a training step (--model) has no use for


def register(sub) -> None:
    ab = sub.add_parser(
        "ab", help="measure two git revisions side by side, in turns, and compare them", formatter_class=Defaults,
        description="Check REV_A and REV_B out in temporary git worktrees and measure the same problems "
                    "on both, each revision in its own worker process, taking turns (A then B, then B "
                    "then A) so drift of the machine falls on both alike. Writes OUT/a and OUT/b (run "
                    "directories; auto's picks per revision in OUT/tuning-a.json and -b.json) and prints `convbench compare OUT/a OUT/b`; the exit status is "
                    "compare's. REV_A and REV_B may be one commit: an A/A run, which shows what the "
                    "measuring itself reports on identical code. Every speed claim in this project goes through it.")
    ab.add_argument("rev_a", metavar="REV_A", help="the baseline revision (a commit, branch or tag)")
    ab.add_argument("rev_b", metavar="REV_B", help="the revision to judge")
    plan_arguments(ab)
    ab.add_argument("--model", type=names("--model", lambda: list(MODELS), example="lenet5"),
                    help=f"comma-separated: {', '.join(MODELS)}; time these models' whole training steps "
                         "(each revision's own network code on its own kernels; --batch sets the batch, "
                         "default each model's own) instead of a suite's layers")
    ab.add_argument("--repo", default=".", metavar="DIR", help="the git repository (default: the current folder)")
    ab.add_argument("--out", metavar="DIR", help="where OUT/a and OUT/b go (default ab-REV_A-REV_B; must not exist)")
    ab.add_argument("--threshold", type=threshold, default=0.10, help="compare's threshold, from 0 to 10 (default 0.10)")
    ab.add_argument("--quiet", action="store_true", help="no progress bar")
    ab.set_defaults(execute=execute)


def _checked(args):
    """(the two commits, the plan, what is measured (problems or steps), the output folder, the
    steps or None), every input read and checked before any worktree or worker is made."""
    from convbench.bench.ab import AbError, Step, resolve
    from convbench.bench.runs import writable_folder
    from convbench.cli.options import UsageError
    from convbench.cli.run import plan_from
    from convbench.cnn.models import model_spec

    out = Path(args.out or "ab-" + "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", r) for r in (args.rev_a, args.rev_b)))
    given = [f"--{name}" for name in LAYER_OPTIONS if getattr(args, name) is not None]
    if args.model and given:
        raise UsageError(f"--model times whole training steps; {', '.join(given)} choose layers: give one or the other")
    try:
        commits = [resolve(Path(args.repo), r) for r in (args.rev_a, args.rev_b)]
        plan = plan_from(args)
        steps = [Step(m, args.batch or model_spec(m).batch_size) for m in args.model] if args.model else None
        targets = steps or plan.problems()
    except (AbError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if out.exists():
        raise UsageError(f"--out {out} already exists; choose another")
    return commits, plan, targets, writable_folder(out), steps


def execute(args) -> int:
    from convbench.bench.ab import AbError, run_ab
    from convbench.cli.compare import compared
    from convbench.cli.options import say
    from convbench.cli.progress import progress

    commits, plan, targets, out, steps = _checked(args)
    if commits[0] == commits[1]:
        say(f"convbench ab: {args.rev_a} and {args.rev_b} are one commit ({commits[0][:10]}): an A/A run, "
            "whose verdicts should all be same or inconclusive")
    groups = len(targets) * len(plan.dtypes) * len(plan.threads)
    kept = lambda: f"the problems finished so far are in {out}/a and {out}/b"
    with progress(f"convbench ab {commits[0][:10]} {commits[1][:10]}", args.quiet, kept, total=groups,
                  unit="problem") as bar:
        try:
            a, b = run_ab(Path(args.repo), (args.rev_a, args.rev_b), plan, out, lambda label: _group_done(bar, label),
                          steps)
        except AbError as exc:
            say(f"convbench ab: {exc}")
            return 1
    return compared(a, b, args.threshold)


def _group_done(bar, label: str) -> None:
    bar.set_postfix_str(label)
    bar.update(1)
