"""A fresh Python process that runs the functions its parent sends it, one at a time.

``python -m convbench.bench.child`` reads pickled ``(function, args)`` from its stdin and writes
pickled ``(True, result)`` or ``(False, exception)`` to what was its stdout; anything the
function prints goes to stderr, so the answers stay readable. It ignores Ctrl-C (its parent
decides when to stop it) and ends when its stdin closes or, on Linux, when its parent dies.
``Child`` is the parent's side.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import subprocess
import sys


class ChildError(RuntimeError):
    """A child process that ended without answering."""


class Child:
    """One child process; ``call(fn, *args)`` runs ``fn(*args)`` in it and returns the result
    (or raises what it raised)."""

    def __init__(self, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "convbench.bench.child"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, fn, *args):
        try:
            pickle.dump((fn, args), self.process.stdin)
            self.process.stdin.flush()
            ok, value = pickle.load(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            code = self.process.wait()
            raise ChildError(f"a measuring process (pid {self.pid}) ended with exit status {code} "
                             "before it answered") from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.close()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints go to stderr; fd 1's old target carries the answers only
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    while True:
        try:
            fn, args = pickle.load(requests)
        except EOFError:
            return
        try:
            answer = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 -- the parent re-raises it
            answer = (False, exc)
        try:
            data = pickle.dumps(answer)
        except Exception as exc:  # noqa: BLE001 -- an exception that does not pickle, say
            data = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        answers.write(data)
        answers.flush()


if __name__ == "__main__":
    main()
