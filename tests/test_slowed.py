"""The test-only slowdown behind the power checks: same answers, wrapped calls."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import kernels
from convbench.bench.child import Child

SLOWED = Path(__file__).with_name("slowed.py")
sys.path.insert(0, str(SLOWED.parent))
import slowed  # noqa: E402


def test_slow_down_wraps_every_kernel_and_keeps_the_answers():
    module = types.SimpleNamespace(**{name: (lambda *a, **k: 42) for name in slowed.FUNCTIONS})
    slowed.slow_down(module, 0.25)
    assert all(getattr(module, name)() == 42 and getattr(module, name).__name__ == "<lambda>"
               for name in slowed.FUNCTIONS)


@pytest.mark.subprocess
def test_write_appends_the_same_wrapper_to_a_backend_module(tmp_path):
    copy = tmp_path / "im2col_slowed.py"
    copy.write_text(Path(kernels.get("im2col").__file__).read_text())
    subprocess.run([sys.executable, str(SLOWED), "--write", str(copy), "0.25"], check=True)
    spec = importlib.util.spec_from_file_location("im2col_slowed", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(getattr(module, name).__name__ == "slower" for name in slowed.FUNCTIONS)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    np.testing.assert_allclose(module.conv2d_forward(x, w)[0], kernels.reference.conv2d_forward(x, w)[0], rtol=1e-10)


@pytest.mark.subprocess
@pytest.mark.skipif(sys.version_info < (3, 11), reason="slowed.py's script mode needs PYTHONSAFEPATH (3.11)")
def test_the_worker_processes_of_a_slowed_run_import_the_slowed_backend(tmp_path, monkeypatch):
    """Run from the repository's root, where ``python -m`` would put the real ``kernels`` first:
    a measuring process started under ``slowed_env`` still gets the slowed im2col, and only it."""
    monkeypatch.chdir(Path(kernels.__file__).parent.parent)
    child = Child(env=slowed.slowed_env("im2col", 0.25, str(tmp_path)))
    try:
        names = {b: child.call(eval, f"__import__('kernels').get('{b}').conv2d_forward.__name__")
                 for b in ("im2col", "numba")}
    finally:
        child.close()
    assert names == {"im2col": "slower", "numba": "conv2d_forward"}
