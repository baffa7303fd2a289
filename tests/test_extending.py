"""Adding a backend is one module and one registry line: a scratch backend, registered the way
CONTRIBUTING.md says, is verified, measured and reported with nothing else touched."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import asdict

import pytest

import kernels
from convbench.bench.report import write_report
from convbench.bench.results import RunDirectory, load_results
from convbench.bench.runner import Plan, Runner

SCRATCH = textwrap.dedent('''
    """A scratch backend: im2col's functions under another name, declaring phases."""
    from kernels import im2col
    from kernels.traits import Traits

    name = "scratch"
    description = "im2col under another name (a test of extending the registry)"
    TRAITS = Traits(phases=True)
    conv2d_forward, conv2d_backward = im2col.conv2d_forward, im2col.conv2d_backward
    maxpool2d_forward, maxpool2d_backward = im2col.maxpool2d_forward, im2col.maxpool2d_backward
    avgpool2d_forward, avgpool2d_backward = im2col.avgpool2d_forward, im2col.avgpool2d_backward
''')


@pytest.fixture
def scratch_backend(tmp_path, monkeypatch):
    (tmp_path / "scratch_backend.py").write_text(SCRATCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(kernels._REGISTRY, "scratch", "scratch_backend")  # the one registry line
    yield "scratch"
    sys.modules.pop("scratch_backend", None)


def test_a_new_backend_is_measured_and_reported(scratch_backend, tmp_path):
    assert scratch_backend in kernels.names() and kernels.traits(scratch_backend).phases
    plan = Plan(suites=["lenet5"], match="conv1|pool1", backends=["naive", scratch_backend], threads=[1], rounds=3)
    run = RunDirectory(tmp_path / "run")
    run.create(asdict(plan))
    Runner(plan, run).execute()
    frame = load_results(run.path)
    mine = frame[frame.backend == scratch_backend]
    assert len(mine) == 6 and (mine.status == "ok").all()
    assert mine[mine.problem == "conv1"].phases.notna().all()  # declared, so measured
    report = write_report(run.path, plots=False).files[0].read_text()
    assert f"| {scratch_backend} " in report and "speedup over naive (geomean)" in report
