"""The ``convbench`` command line. It only parses: one module per command declares its arguments
(argparse ``type=`` converters check every value) and calls the harness or the network; this
module builds the parser, maps what went wrong to one line and an exit status, and shows
warnings as one line each.

Exit status: 0 done; 1 a measured result is bad (nothing measured, a regression, a training
that diverged); 2 bad input (an option, a file, a run folder); 130 interrupted.
"""

from __future__ import annotations

import sys
import warnings

from convbench import __version__
from convbench.cli import ab, compare, featuremaps, listing, report, run, step, targets, train
from convbench.cli.options import Parser, UsageError
from convbench.cli.progress import Interrupted

COMMANDS = (listing, run, report, train, step, featuremaps, targets, ab, compare)


def parser() -> Parser:
    top = Parser(prog="convbench",
                 description="Benchmark CPU conv2d and pooling backends: verified against a float64 reference, "
                             "timed per direction, written row by row so nothing measured is lost.")
    top.add_argument("--version", action="version", version=f"convbench {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return top


def _exit_status(exc: BaseException) -> int | None:
    """The exit status of what a command raised, or None for a bug (its traceback is shown)."""
    import kernels
    from convbench.bench.errors import InputError
    from convbench.bench.runs import NothingMeasured
    from convbench.cnn.train import Diverged

    for kinds, status in (((UsageError, InputError, kernels.BackendUnavailable), 2),
                          ((NothingMeasured, Diverged, OSError), 1)):
        if isinstance(exc, kinds):
            return status
    return None


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"convbench: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version (0), or a bad command line, told in one line (2)
        return exc.code
    warnings.simplefilter("default")
    warnings.showwarning = _one_line_warnings  # a library's warning, as one line without its source
    try:
        return args.execute(args)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except Exception as exc:
        status = _exit_status(exc)
        if status is None:
            raise
        print(f"convbench {args.command}: {exc}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
