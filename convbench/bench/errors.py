"""The one error every bad input raises, whatever room finds it: a damaged or unreadable file,
a suite line, a data file, a run directory that cannot be used as asked. The command line turns
it into one line and exit status 2; anything else that goes wrong is a bug (exit 1)."""


class InputError(ValueError):
    """Bad input; the message names the file (and line) or the argument, in one bounded line."""


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (a 10 MB bad line is not a message)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"
