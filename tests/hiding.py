"""Run Python in a fresh process as if some modules were not installed (for the tests' subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def without(modules: tuple[str, ...], code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing any of ``modules`` (a name or a dotted
    prefix) raises ModuleNotFoundError, as if it were not installed. An import hook rather than
    ``sys.modules[name] = None``, which libraries that probe sys.modules (scipy looks for torch)
    trip over."""
    hook = (
        "import sys\n"
        "class Without:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if any(name == m or name.startswith(m + '.') for m in {modules!r}):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Without())\n"
    )
    return subprocess.run([sys.executable, "-c", hook + code], cwd=cwd, capture_output=True, text=True, timeout=300)
