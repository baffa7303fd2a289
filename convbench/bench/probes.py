"""The machine's slow facts (its CPU's description, its SGEMM peak and copy bandwidth per thread
count), measured once and, where ``$CONVBENCH_PROBE_CACHE`` names a file, remembered there.

Each is a second or more of probing, and every measuring command starts with them. The test
suite sets the variable to one file per test session, so its hundreds of small runs (and the
subprocesses they start) reuse one measured session instead of probing the machine each time;
users leave it unset and every run probes afresh. A file lock makes parallel test workers
measure each fact once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

ENV = "CONVBENCH_PROBE_CACHE"
_MEMO: dict[str, object] = {}


def remembered(key: str, measure: Callable[[], object]) -> object:
    """``measure()`` the first time ``key`` is asked for in this process (or in this test session,
    through ``$CONVBENCH_PROBE_CACHE``); the same value after that."""
    if key in _MEMO:
        return _MEMO[key]
    path = os.environ.get(ENV)
    if not path:
        value = measure()
        if key == "cpu":  # the CPU's description never changes; a peak is measured by every session
            _MEMO[key] = value
        return value
    with FileLock(path + ".lock"):
        try:
            saved = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            saved = {}
        if key not in saved:
            saved[key] = measure()
            Path(path).write_text(json.dumps(saved))
    _MEMO[key] = saved[key]
    return saved[key]
