"""What both kinds of suite file share: reading one as text, its one error, its whole numbers."""

from __future__ import annotations

from pathlib import Path

from convbench.bench.errors import InputError, clip
from convbench.bench.limits import MAX_SIZE


class SuiteError(InputError):
    """A suite file or descriptor that cannot be read; the message names the line and the field."""


def read_text(path: str | Path) -> str:
    """A suite file's text (a byte-order mark dropped); SuiteError naming it if it is not text."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a suite is a CSV "
                         "or a benchdnn batch file") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def integer(text: str, where: str, field: str, minimum: int) -> int:
    """``text`` as a whole number from ``minimum`` to 2**31 - 1; SuiteError naming where and the field."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise SuiteError(f"{where}: field {field!r} must be an integer; got {clip(repr(text), 80)}") from None
    if not minimum <= value <= MAX_SIZE:
        raise SuiteError(f"{where}: field {field!r} must be between {minimum} and {MAX_SIZE:,}; got {clip(str(value), 40)}")
    return value
