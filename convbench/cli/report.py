"""``convbench report``: Markdown tables and PNG plots of runs."""

from __future__ import annotations

from pathlib import Path

from convbench.cli.options import names, say

FORMATS = ("markdown", "plain", "csv")  # what convbench.bench.report.Report.table writes


def register(sub) -> None:
    report = sub.add_parser("report", help="Markdown tables and PNG plots of a run",
                            description="Write RUN/report.md (per-problem tables, ratios to the best, "
                                        "geometric-mean speedups, winners) and RUN/plots/*.png.")
    report.add_argument("run", metavar="RUN", nargs="*",
                        help="a run directory or pytest-benchmark JSON file; several are reported together "
                             "(runs from several machines: a table across machines, then each machine's); "
                             "default the newest run under ./runs")
    report.add_argument("--out", metavar="DIR", help="where report.md and plots/ go; default RUN itself "
                                                      "(required with several RUNs)")
    report.add_argument("--columns", metavar="NAMES", type=names("--columns", example="median"),
                        help="comma-separated columns of the all-measurements table: machine, suite, problem, batch, "
                             "backend, direction, dtype, threads, status, min (the fastest call), fastest (the verdicts' statistic: "
                             "each process's fastest call, geometric mean over processes), median, iqr, calls, "
                             "processes, gflops, peak%%, memory; "
                             "default suite,problem,backend,direction,dtype,threads,min,median,iqr,calls,gflops")
    report.add_argument("--sort", metavar="NAMES", type=names("--sort", example="median"),
                        help="sort that table by these columns, '-' before a name for descending (--sort=-gflops); "
                             "default the order measured")
    report.add_argument("--no-plots", action="store_true", help="tables only")
    report.add_argument("--format", choices=FORMATS, default="markdown",
                        help="how the terminal's table is written: markdown or plain text (each suite and "
                             "direction's summary, or the measurements --columns/--sort choose), or csv (those "
                             "measurements, times in seconds, for other tools)")
    report.set_defaults(execute=execute)


def execute(args) -> int:
    from convbench.bench.report import write_report

    paths = args.run or [_latest_run()]
    written = write_report(paths, plots=not args.no_plots, out=args.out, columns=args.columns, sort=args.sort)
    print(written.table(args.format), end="")
    plots = written.files[1:]
    say(f"convbench report: wrote {written.files[0]}" + (f" and {len(plots)} plot(s) in {plots[0].parent}" if plots else ""))
    return 0


def _latest_run() -> str:
    """The newest run directory under ./runs (what `convbench run` and `step` make by default)."""
    from convbench.cli.options import UsageError

    found = [p.parent for p in Path("runs").glob("*/measurements.jsonl")]
    if not found:
        raise UsageError("no RUN given and no run under ./runs; name a run directory or pytest-benchmark JSON file")
    return str(max(found, key=lambda p: p.stat().st_mtime))
