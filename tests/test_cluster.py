"""`convbench run --scheduler`: a plan measured on the workers of a real Dask cluster.

The scheduler and the workers are started as the README starts them (``dask scheduler``, ``dask
worker ADDRESS --nthreads 1 --resources machine=1``), here on this one machine under two machine
names. Their timings share two cores and mean nothing: these tests check what the cluster path
writes, never how fast it measured.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from convbench.bench.results import MACHINE_ENV, RunDirectory  # noqa: E402
from convbench.bench.runner import Plan, row_key  # noqa: E402
from convbench.cli import main  # noqa: E402

DASK = str(Path(sys.executable).with_name("dask"))
PLAN = ["run", "--suite", "seeds", "--backends", "im2col,numba", "--directions", "forward",
        "--threads", "1", "--budget", "0.02", "--turns", "3", "--window", "0.1", "--quiet"]  # 2 problems a cell
MACHINES = ("alpha", "beta")

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(command: list[str], log: Path, **options) -> subprocess.Popen:
    """``command`` in the background, its output to ``log`` (the child keeps the file open)."""
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **options)


def _start_worker(address: str, name: str, log: Path) -> subprocess.Popen:
    """One worker as the README starts one per machine (no nanny here, so a kill stays a kill)."""
    return _spawn([DASK, "worker", address, "--nthreads", "1", "--resources", "machine=1",
                   "--name", name, "--no-nanny", "--no-dashboard"], log, env={**os.environ, MACHINE_ENV: name})


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two workers, named alpha and beta; yields (address, {name: process})."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                       tmp_path / "scheduler.log")
    workers = {name: _start_worker(address, name, tmp_path / f"{name}.log") for name in MACHINES}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with distributed.Client(address, timeout="5s") as client:
                    if len(client.scheduler_info()["workers"]) == len(MACHINES):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the test cluster did not start: " + (tmp_path / "scheduler.log").read_text()[-2000:])
            time.sleep(0.5)
        yield address, workers
    finally:
        for process in [*workers.values(), scheduler]:
            process.kill()
            process.wait()


def _plan_keys(out: Path) -> list[tuple]:
    return sorted(Plan(**RunDirectory(out).plan()).keys())


def _keys(out: Path) -> list[tuple]:
    return sorted(row_key(r) for r in RunDirectory(out).rows())


def test_a_plan_measured_on_two_workers_is_a_run_like_any_other(cluster, tmp_path, capsys):
    address, _ = cluster
    out, local = tmp_path / "cluster", tmp_path / "local"
    assert main([*PLAN, "--scheduler", address, "--out", str(out)]) == 0
    assert main([*PLAN, "--match", "seed000", "--out", str(local)]) == 0

    rows = RunDirectory(out).rows()
    assert _keys(out) == _plan_keys(out)  # every cell, each once
    assert {r["machine"] for r in rows} == set(MACHINES)  # both workers measured
    sessions = RunDirectory(out).sessions()
    assert {s["machine"] for s in sessions} == set(MACHINES) and all(s["worker"].startswith("tcp://") for s in sessions)
    assert {r["session"] for r in rows} == {s["session"] for s in sessions}
    assert all(r["status"] == "ok" and r["max_rel_err"] <= 1e-4 for r in rows)  # verified where timed

    # the same files and, row for row, the same fields as a local run
    files = lambda path: sorted(p.name for p in path.iterdir() if p.name != ".lock")  # noqa: E731
    assert files(out) == files(local)
    local_rows = {(r["backend"]): set(r) for r in RunDirectory(local).rows()}
    for r in rows:
        assert set(r) == local_rows[r["backend"]], r["problem"]
    assert {c["session"] for c in RunDirectory(out).calibrations()} <= {s["session"] for s in sessions}

    # report: a table across machines, then each machine's
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Across machines" in text and "# alpha" in text and "# beta" in text
    assert (out / "plots" / "alpha").is_dir() and (out / "plots" / "beta").is_dir()
    # several runs reported together: three machines
    assert main(["report", str(out), str(local), "--out", str(tmp_path / "both"), "--no-plots"]) == 0
    assert all(name in (tmp_path / "both" / "report.md").read_text() for name in MACHINES)
    # compare matches machine by machine; other machines only when asked
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    assert "alpha" in capsys.readouterr().out
    assert main(["compare", str(local), str(out)]) == 2
    assert "measured on" in capsys.readouterr().err


def _processing_on(client, name: str) -> list[str]:
    """The convbench cells the worker called ``name`` is measuring now."""
    addresses = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
    return [str(k) for k in client.processing().get(addresses.get(name), ()) if str(k).startswith("convbench-")]


def test_a_worker_killed_mid_cell_has_its_cell_measured_elsewhere_once(cluster, tmp_path):
    address, workers = cluster
    out = tmp_path / "run"
    slower = [{"0.02": "0.3", "0.1": "1.5"}.get(a, a) for a in PLAN]  # cells long enough to be caught in flight
    client_process = subprocess.Popen([sys.executable, "-m", "convbench", *slower, "--scheduler", address,
                                       "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with distributed.Client(address, timeout="5s") as watcher:
        deadline = time.monotonic() + 120
        while not (cells := _processing_on(watcher, "alpha")) or not (out / "measurements.jsonl").exists():
            assert time.monotonic() < deadline and client_process.poll() is None, "alpha never took a cell"
            time.sleep(0.01)
        workers["alpha"].send_signal(signal.SIGKILL)
        workers["alpha"].wait()
    _, err = client_process.communicate(timeout=300)
    assert client_process.returncode == 0, err
    assert _keys(out) == _plan_keys(out)  # nothing lost, nothing twice
    killed = cells[0]  # named by its first problem
    measured_again = [r for r in RunDirectory(out).rows()
                      if killed.startswith((f"convbench-{r['problem']}+", f"convbench-{r['problem']}-"))]
    assert measured_again and {r["machine"] for r in measured_again} == {"beta"}


def test_a_cluster_run_whose_client_died_is_finished_without_the_cluster(cluster, tmp_path):
    from killing import kill_when, lines

    address, _ = cluster
    out = tmp_path / "run"
    kill_when([*PLAN, "--scheduler", address, "--out", str(out)], lambda: lines(out / "measurements.jsonl") >= 2)
    before = RunDirectory(out).rows()
    assert 2 <= len(before) < len(_plan_keys(out))
    assert main(["run", "--resume", "--out", str(out), "--quiet"]) == 0  # no --scheduler: here
    assert _keys(out) == _plan_keys(out)
    machines = {r["machine"] for r in RunDirectory(out).rows()}
    assert machines & set(MACHINES) and len(machines) >= 2  # the cluster's rows and this machine's


def test_an_unreachable_scheduler_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from convbench.bench import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    address = f"tcp://127.0.0.1:{_free_port()}"
    assert main([*PLAN, "--scheduler", address, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--scheduler {address}: cannot reach a Dask scheduler" in err and "Traceback" not in err
    assert not RunDirectory(tmp_path / "run").rows()


def test_workers_without_the_machine_resource_are_refused_with_the_command_to_start_them(tmp_path, capsys, monkeypatch):
    from convbench.bench import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)  # how long it waits for such a worker to join
    # its dashboard on a free port: None means the default 8787, which another cluster may hold
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc:
        assert main([*PLAN, "--scheduler", lc.scheduler_address, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no worker offers the resource machine=1" in err and "--resources machine=1" in err


def test_the_local_path_does_not_import_dask(tmp_path):
    code = ("import sys; from convbench.cli import main; "
            f"code = main({json.dumps([*PLAN, '--match', 'seed000', '--backends', 'im2col', '--out', str(tmp_path / 'run')])}); "
            "assert code == 0, code; "
            "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
