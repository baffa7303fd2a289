"""The progress bar and Ctrl-C, written once for every command that works for long."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    """Ctrl-C: the message says what was kept and how to go on; exit status 130."""


class _Bar:
    """A tqdm bar drawn at its first use, so that an error found before any work (a damaged
    data file, say) is the only line on the screen."""

    def __init__(self, **options):
        self._options, self._bar = options, None

    def __getattr__(self, name: str):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(**self._options)
        return getattr(self._bar, name)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def progress(desc: str, quiet: bool, kept: Callable[[], str], total: int | None = None,
             unit: str = "measurement") -> Iterator[_Bar]:
    """A progress bar (none with ``quiet``), closed however the work ends; Ctrl-C becomes
    ``Interrupted(kept())``, ``kept`` telling what was kept and the command that goes on."""
    bar = _Bar(total=total, desc=desc, unit=unit, disable=quiet)
    try:
        yield bar
    except KeyboardInterrupt:
        raise Interrupted(kept()) from None
    finally:
        bar.close()
