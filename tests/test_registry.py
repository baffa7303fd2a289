"""The registry: names, availability, lookup errors, and life without numba."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import kernels

MISSION = ("naive", "scipy", "im2col", "stride_tricks", "numba")  # the five the project promises


def test_names_hold_the_five_backends_in_canonical_order():
    assert [name for name in kernels.names() if name in MISSION] == list(MISSION)
    assert len(set(kernels.names())) == len(kernels.names())


def test_every_backend_is_available_here():
    assert kernels.available() == dict.fromkeys(kernels.names())


@pytest.mark.parametrize("name", [*kernels.names(), "reference"])
def test_backends_follow_the_protocol(name):
    be = kernels.reference if name == "reference" else kernels.get(name)
    assert isinstance(be, kernels.Backend)
    assert be.name == name
    assert be.description and "\n" not in be.description


def test_reference_is_not_a_registered_backend():
    assert "reference" not in kernels.names()


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown backend 'cuda'; choose one of: " + ", ".join(kernels.names())):
        kernels.get("cuda")


@pytest.mark.subprocess
def test_kernels_imports_and_explains_without_numba():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numba"] = None  # makes 'import numba' raise ImportError, as if not installed
        import numpy as np
        import kernels
        reasons = kernels.available()
        assert reasons["numba"] and "numba" in reasons["numba"], reasons
        assert all(reasons[name] is None for name in kernels.names() if name != "numba"), reasons
        try:
            kernels.get("numba")
        except kernels.BackendUnavailable as exc:
            print("unavailable:", exc)
        y, _ = kernels.get("im2col").conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
        assert (y == 4).all()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unavailable: backend 'numba' is unavailable: import of numba halted")


@pytest.mark.subprocess
def test_every_backend_module_is_an_attribute_after_a_plain_import():
    """`import kernels; kernels.auto.picks()` must work as it reads, for every backend's module."""
    code = ("import kernels, sys\n"
            "for module in sorted(set(kernels._REGISTRY.values()) - {'kernels.numba_jit'}):\n"
            "    assert module not in sys.modules\n"
            "    getattr(kernels, module.split('.')[1])\n"
            "kernels.auto.picks()\n"
            "try:\n"
            "    kernels.no_such_backend\n"
            "except AttributeError as exc:\n"
            "    assert 'no_such_backend' in str(exc)\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
