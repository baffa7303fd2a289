"""The kill tests' common part: start a convbench command and SIGKILL it once it has saved something."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def lines(path: Path) -> int:
    """Complete and partial lines in ``path``; 0 while it does not exist."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill_when(args: list[str], ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """Run ``python -m convbench ARGS`` and SIGKILL it as soon as ``ready()`` holds (or at ``timeout``)."""
    proc = subprocess.Popen([sys.executable, "-m", "convbench", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
