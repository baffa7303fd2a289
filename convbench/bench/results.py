"""Results that are never lost: one JSON line per measurement, appended and synced as it completes.

A run directory holds

- ``plan.json``: what the run was asked to measure (``--resume`` reads it back);
- ``sessions.jsonl``: one line per invocation, with the machine's metadata (CPU, cores, OS,
  library versions, BLAS and its threads, git commit, time, measured SGEMM peak and copy
  bandwidth per thread count);
- ``measurements.jsonl``: one line per measurement, naming its session (and, when several
  processes measured it, ``sessions``: one per process); a measured row keeps its raw samples
  per process and turn (``turn_fastest_s``: each turn's fastest call, ``turn_medians_s``: its
  median call, ``turn_calls``: the calls behind them), the statistic the verdict compares
  (``fastest_s``, ``convbench.bench.stats.typical``) and the CPU that other processes took while
  it ran (``others_cores``, ``contended``);
- ``calibration.jsonl``: the machine's calibration workload, measured before every group of
  measurements and at the end (``convbench.bench.machine.calibrate``).

Every line carries ``schema`` (``SCHEMA``); rows without it are from schema 1, which kept no
raw samples. Rows of schema 2 (one process, ``samples_s``, ``sample_min_s``, ``sample_calls``,
``rounds``) are read in schema 3's words (``upgrade``).

A killed run loses at most the measurement in flight; a half-written last line is skipped when
reading.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from convbench.bench import probes, stats
from convbench.bench.errors import InputError, clip
from convbench.bench.machine import CALIBRATION_VERSION

PLAN, SESSIONS, MEASUREMENTS, CALIBRATION = "plan.json", "sessions.jsonl", "measurements.jsonl", "calibration.jsonl"
LOCK = ".lock"  # held by the process writing the run (filelock)
SCHEMA = 3


def make_row(session: str, base: dict, status: str, **fields) -> dict:
    """A results row: the one way every command makes one (the runner, training steps, ``ab``).
    ``base`` says what was measured, ``fields`` what came of it; the row gets the schema, its
    session, the time it was written and, where it is timed, its rates (``with_rates``)."""
    return with_rates({"schema": SCHEMA, "session": session, **base, "status": status, **fields,
                       "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def with_rates(row: dict) -> dict:
    """``row`` with ``gflops`` and ``pct_of_peak`` (of its session's SGEMM peak) from its flops and
    median, where it is timed and has them; rows merged from several processes get them again."""
    if row["status"] == "ok" and row.get("flops"):
        row["gflops"] = row["flops"] / row["median_s"] / 1e9
        if row.get("peak_gflops"):
            row["pct_of_peak"] = 100 * row["gflops"] / row["peak_gflops"]
    return row


def _versions() -> dict:
    from importlib import metadata

    import numpy
    import scipy

    try:
        ours = metadata.version("convbench")  # the installed distribution's, not the package's import
    except metadata.PackageNotFoundError:
        ours = None
    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "scipy": scipy.__version__, "convbench": ours}
    try:
        import numba

        versions["numba"] = numba.__version__
    except ImportError:
        versions["numba"] = None
    return versions


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


MACHINE_ENV = "CONVBENCH_MACHINE"


def machine_name() -> str:
    """The name that tells this machine's rows from another's in one report: ``$CONVBENCH_MACHINE``
    where set (to give cluster workers readable names), else the host name."""
    return os.environ.get(MACHINE_ENV, "").strip() or platform.node() or "unnamed"


def _cpu_info() -> dict:
    def probe() -> dict:
        import cpuinfo  # about a second: it probes the CPU in a subprocess

        return cpuinfo.get_cpu_info()

    return probes.remembered("cpu", probe)


def machine_metadata() -> dict:
    """What the figures depend on: machine name, host, CPU, cores, OS, versions, BLAS, commit, time."""
    from threadpoolctl import threadpool_info

    cpu = _cpu_info()
    return {
        "machine": machine_name(),
        "host": platform.node(),
        "cpu": cpu.get("brand_raw") or platform.processor() or platform.machine(),
        "cpu_flags_avx512": "avx512f" in cpu.get("flags", []),
        "cpu_flags_avx2": "avx2" in cpu.get("flags", []),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        **{f"{name}_version": version for name, version in _versions().items()},
        "blas": ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                          if i.get("user_api") == "blas") or None,
        "git_commit": git_commit(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def describe_machine(m) -> str:
    """``CPU (N cores), BLAS ..., numpy ..., numba ..., commit ...`` of a session's metadata."""
    blas = ", ".join(sorted(str(m.get("blas")).split(", ")))
    return (f"{m.get('cpu')} ({m.get('cores')} cores), BLAS {blas}, numpy {m.get('numpy_version')}, "
            f"numba {m.get('numba_version')}, commit {m.get('git_commit')}")


def machine_line(frame: pd.DataFrame) -> str:
    """One line naming the machine(s) and software of a frame's rows, for the top of an output."""
    if frame.empty:
        return "Machine: unknown (no rows)"
    firsts = frame.drop_duplicates(subset=[c for c in ("machine", "cpu") if c in frame])
    parts = list(dict.fromkeys(describe_machine(first) for _, first in firsts.iterrows()))
    return ("Machine: " if len(parts) == 1 else "Machines: ") + "; ".join(parts)


def _append_line(path: Path, record: dict) -> None:
    """Append one JSON line and sync it. A torn last line (a kill in mid-write) is cut off first,
    or ended, if it is a whole record that only lacks its newline: a new line never joins it."""
    with open(path, "ab+") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(end - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                start = data.rfind(b"\n") + 1
                try:
                    json.loads(data[start:])
                    f.write(b"\n")
                except ValueError:
                    f.truncate(start)
        f.write((json.dumps(record, default=str) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _read_lines(path: Path, check=None) -> list[dict]:
    """The JSON objects of a .jsonl file, each passed to ``check(record, "FILE:LINE", seen)``
    when given (``seen``: a dict the checker may keep state in across lines)."""
    records: list[dict] = []
    if not path.exists():
        return records
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    seen: dict = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines):  # the line in flight when the run was killed
                warnings.warn(f"{path}:{number}: skipping a half-written last line", stacklevel=3)
                continue
            raise RunError(f"{path}:{number}: not a JSON line: {clip(line, 80)}") from None
        if not isinstance(record, dict):
            raise RunError(f"{path}:{number}: not a JSON object: {clip(line, 80)}")
        if check is not None:
            record = check(record, f"{path}:{number}", seen) or record
        records.append(record)
    return records


STATUSES = ("ok", "skipped", "error", "wrong", "unavailable")
_TEXTS = ("suite", "problem", "backend", "direction", "dtype", "status")
_NUMBERS = ("N", "C", "H", "W", "K", "R", "S", "groups", "repeat", "flops", "calls", "turns", "processes", "gflops",
            "pct_of_peak", "max_rel_err", "others_cores", "cpu_per_wall", "load1", "peak_mem_bytes", "intensity",
            "peak_gflops", "bandwidth_gbs")
_SAMPLES = ("turn_medians_s", "turn_fastest_s", "turn_calls")  # per process, per turn
_RENAMED = {"samples_s": "turn_medians_s", "sample_min_s": "turn_fastest_s", "sample_calls": "turn_calls",
            "rounds": "calls"}  # schema 2's words -> schema 3's


def upgrade(row: dict) -> dict:
    """A row of schema 1 or 2 in schema 3's words: its one process's samples as a list of one."""
    if row.get("schema", 1) >= 3:
        return row
    new = {_RENAMED.get(k, k): [v] if k in _RENAMED and isinstance(v, list) else v for k, v in row.items()}
    if isinstance(new.get("turn_fastest_s"), list) and new["turn_fastest_s"] and all(map(_is_number, new["turn_fastest_s"][0])):
        new["fastest_s"], new["processes"] = stats.typical(new["turn_fastest_s"]), 1
    return new


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_row(row: dict, where: str, seen: dict) -> dict:
    """The one validation of a measurement row as it is read: the schema, the fields that name
    it, its status, the types of its figures, and no measurement twice. RunError naming the
    file, line and field otherwise, so that no reader (report, compare, targets, resume) meets
    a malformed row. Returns the row in this schema's words (``upgrade``)."""
    schema = row.get("schema", 1)
    if not (isinstance(schema, int) and not isinstance(schema, bool) and 1 <= schema <= SCHEMA):
        raise RunError(f"{where}: schema {clip(repr(schema), 40)} is not one this convbench reads (1 to {SCHEMA})")
    for old in _RENAMED:
        if old in row and old != "rounds" and not (isinstance(row[old], list) and all(map(_is_number, row[old]))):
            raise RunError(f"{where}: field {old!r} is not a list of numbers")
    row = upgrade(row)
    for name in _TEXTS:
        if not isinstance(row.get(name), str):
            raise RunError(f"{where}: field {name!r} " + (f"is {clip(repr(row[name]), 40)}, not text" if name in row
                                                           else "is missing"))
    if not (isinstance(row.get("threads"), int) and not isinstance(row["threads"], bool) and row["threads"] >= 1):
        raise RunError(f"{where}: field 'threads' is {clip(repr(row.get('threads')), 40)}, not a whole number >= 1")
    if row["status"] not in STATUSES:
        raise RunError(f"{where}: field 'status' is {clip(repr(row['status']), 40)}, not one of {', '.join(STATUSES)}")
    for name, value in row.items():
        timed = name.endswith("_s") and name not in _SAMPLES
        if (timed or name in _NUMBERS) and value is not None and not _is_number(value):
            raise RunError(f"{where}: field {name!r} is {clip(repr(value), 40)}, not a number")
    for name in _SAMPLES:
        if name in row and not (isinstance(row[name], list) and all(
                isinstance(process, list) and all(map(_is_number, process)) for process in row[name])):
            raise RunError(f"{where}: field {name!r} is not a list (one per process) of lists of numbers")
    if row["status"] == "ok" and not (_is_number(row.get("median_s")) and row["median_s"] > 0):
        raise RunError(f"{where}: an ok row needs 'median_s', a time > 0; got {clip(repr(row.get('median_s')), 40)}")
    key = (row.get("machine"), row["suite"], row["problem"], row.get("N"), row["backend"], row["dtype"],
           row["threads"], row["direction"])
    if key in seen:
        raise RunError(f"{where}: repeats the measurement of line {seen[key]} ({row['problem']} {row['backend']} "
                       f"{row['direction']} {row['dtype']} {row['threads']}t)")
    seen[key] = where.rsplit(":", 1)[1]
    return row


class RunError(InputError):
    """A run directory that cannot be started or resumed as asked."""


class RunDirectory:
    """Where one run's plan, sessions and measurements live."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def exists(self) -> bool:
        return (self.path / PLAN).exists()

    def create(self, plan: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / PLAN).write_text(json.dumps(plan, indent=2, allow_nan=False) + "\n")  # never Infinity: not JSON

    def plan(self) -> dict:
        """The saved plan (a JSON object); RunError naming the file when it is not one."""
        path = self.path / PLAN
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RunError(f"{path} cannot be read ({clip(str(exc))}); start a new run in another folder") from None
        if not isinstance(plan, dict):
            raise RunError(f"{path} is not a plan (a JSON object); start a new run in another folder")
        return plan

    @contextmanager
    def lock(self, resuming: bool = True) -> Iterator[None]:
        """Hold this run directory for one writer: a second ``run``/``step`` (a ``--resume``
        started while the first still runs) is refused at once rather than doubling rows."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            then = "before resuming" if resuming else "or choose another --out"
            raise RunError(f"{self.path} is being written by another convbench process; "
                           f"wait for it to finish (or stop it) {then}") from None
        try:
            yield
        finally:
            lock.release()

    def begin(self, plan: dict | None, command: str) -> dict:
        """The plan a ``command`` (``run``, ``step``) carries out here: ``plan``, saved in a new
        run directory; or, with ``plan=None`` (``--resume``), the plan saved here before.

        Raises RunError for a new run where one exists, or a resume where none is or where the
        saved run is another command's.
        """
        if plan is None:
            if not self.exists:
                what = "run" if command == "run" else f"{command} run"
                raise RunError(f"--resume: {self.path} holds no {what} to finish (no plan.json)")
            saved = self.plan()
            if saved.get("command", "run") != command:
                raise RunError(f"{self.path} holds a `convbench {saved.get('command', 'run')}` run, which "
                               f"`convbench {command} --resume` cannot finish")
            return saved
        if self.exists:
            raise RunError(f"{self.path} already holds a run; finish it with --resume or choose another --out")
        self.create(plan)
        return plan

    @staticmethod
    def new_session_id() -> str:
        return uuid.uuid4().hex[:12]

    def start_session(self, metadata: dict) -> str:
        session = self.new_session_id()
        self.write_session({"session": session, **metadata})
        return session

    def write_session(self, record: dict) -> None:
        """One session's line (``session`` and the machine's metadata), as measured elsewhere."""
        _append_line(self.path / SESSIONS, {"schema": SCHEMA, **record})

    def add_calibration(self, session: str, record: dict) -> dict:
        _append_line(self.path / CALIBRATION, {"schema": SCHEMA, "session": session, **record})
        return record

    def calibrations(self) -> list[dict]:
        return _read_lines(self.path / CALIBRATION)

    def append(self, row: dict) -> None:
        _append_line(self.path / MEASUREMENTS, row)

    def rows(self) -> list[dict]:
        """The measurement rows, each validated (``check_row``)."""
        return _read_lines(self.path / MEASUREMENTS, check_row)

    def sessions(self) -> list[dict]:
        return _read_lines(self.path / SESSIONS)


def _bad_benchmark(bench) -> str | None:
    """What makes one entry of a pytest-benchmark file unusable, or None."""
    if not isinstance(bench, dict):
        return "is not an object"
    stats_ = bench.get("stats")
    if not isinstance(stats_, dict):
        return "has no 'stats' object"
    for key in ("median", "iqr", "min", "rounds"):
        value = stats_.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"has stats.{key} = {clip(repr(value), 40)}; expected a number >= 0"
    if not stats_["median"] > 0 or not stats_["min"] > 0:
        return "has a zero time: not a measurement"
    data = stats_.get("data")
    if data is not None and (not isinstance(data, list) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0 for t in data)):
        return "has stats.data that is not a list of positive times"
    if not isinstance(bench.get("extra_info", {}) or {}, dict):
        return "has an extra_info that is not an object"
    return None


def read_benchmark_json(path: Path) -> pd.DataFrame:
    """A ``pytest --benchmark-json`` file as measurement rows (the benchmarks put the problem,
    backend, direction, dtype, threads, FLOPs and the calibration workload's seconds measured
    just before them in ``extra_info``). The raw call times (``stats.data``, which
    ``--benchmark-json`` always writes) become samples as the medians and the fastest calls of
    consecutive blocks."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: cannot read it as JSON ({clip(str(exc))})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InputError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    machine, commit = (d if isinstance(d, dict) else {} for d in (data.get("machine_info"), data.get("commit_info")))
    ours = machine.get("convbench") if isinstance(machine.get("convbench"), dict) else {}
    rows = []
    for number, bench in enumerate(data["benchmarks"]):
        bad = _bad_benchmark(bench)
        if bad:
            raise InputError(f"{path}: benchmarks[{number}] {bad}")
        info, bstats = bench.get("extra_info") or {}, bench["stats"]
        if "backend" not in info:
            continue  # a benchmark that is not one of convbench's
        times = bstats.get("data") or []
        samples, lows = stats.blocks(times).tolist(), stats.blocks(times, statistic=np.min).tolist()
        defaults = {"dtype": "float32", "threads": machine.get("cpu", {}).get("count"), "repeat": 1}
        row = {"session": f"pytest-benchmark {data.get('datetime', '')}", "status": "ok", **defaults, **info,
               "median_s": bstats["median"], "iqr_s": bstats["iqr"], "min_s": bstats["min"], "calls": bstats["rounds"],
               "turn_medians_s": [samples] if samples else None, "turn_fastest_s": [lows] if lows else None,
               "fastest_s": stats.typical(lows) if lows else bstats["min"], "processes": 1, "turns": len(samples),
               "noisy": stats.is_noisy(samples) if samples else not bstats["iqr"] <= stats.NOISY_SPREAD * bstats["median"],
               "benchmark": bench["fullname"],
               "cpu": machine.get("cpu", {}).get("brand_raw"), "cores": machine.get("cpu", {}).get("count"),
               "os": " ".join(str(machine[k]) for k in ("system", "release") if machine.get(k)) or None,
               "python_version": machine.get("python_version"), "git_commit": commit.get("id"),
               # convbench's own metadata, where tests/benchmarks/conftest.py put it
               **{k: v for k, v in ours.items() if k in ("machine", "blas", "numpy_version", "scipy_version",
                                                          "numba_version", "git_commit") and v is not None},
               "started": data.get("datetime"), "peak_gflops": float("nan"), "bandwidth_gbs": float("nan")}
        if info.get("flops"):
            row["gflops"] = info["flops"] / bstats["median"] / 1e9
        rows.append(row)
    return pd.DataFrame(rows)


def is_benchmark_json(path: str | Path) -> bool:
    """Whether ``path`` is read as a ``pytest --benchmark-json`` file (else as a run directory)."""
    path = Path(path)
    return path.suffix == ".json" and path.is_file()


def benchmark_calibration(frame: pd.DataFrame, threads: int | None = None) -> list[list[float]]:
    """``load_calibration`` of a pytest-benchmark file already read by ``read_benchmark_json``:
    one process's calibrations."""
    if "calibration_s" not in frame or "calibration_version" not in frame:
        return []
    frame = frame[frame.calibration_version == CALIBRATION_VERSION]
    if threads is not None:
        frame = frame[frame.threads == threads]
    values = frame["calibration_s"].dropna().tolist()
    return [values] if values else []


def load_calibration(path: str | Path, threads: int | None = None, machine: str | None = None) -> list[list[float]]:
    """The calibration workload's seconds (``index_s``) measured through a run (or, for a
    pytest-benchmark file, before each benchmark), one list per session (a process), of this
    version of the workload and, when given, on ``threads`` threads and on ``machine`` (a run
    measured on a cluster holds several); empty when it holds none."""
    path = Path(path)
    if is_benchmark_json(path):
        return benchmark_calibration(read_benchmark_json(path), threads)
    run = RunDirectory(path.parent if path.name == MEASUREMENTS else path)
    sessions = {s.get("session"): s.get("machine") for s in run.sessions()} if machine is not None else {}
    per_session: dict[str, list[float]] = {}
    for c in run.calibrations():
        if (c.get("version") == CALIBRATION_VERSION and isinstance(c.get("index_s"), (int, float))
                and (threads is None or c.get("threads") == threads)
                and (machine is None or sessions.get(c.get("session")) == machine)):
            per_session.setdefault(c.get("session"), []).append(c["index_s"])
    return list(per_session.values())


TIMED_COLUMNS = ("median_s", "iqr_s", "min_s", "fastest_s", "calls", "gflops", "pct_of_peak", "flops", "peak_gflops",
                 "bandwidth_gbs")  # every frame has them, NaN where a row lacks them


def load_results(path: str | Path) -> pd.DataFrame:
    """Every measurement of a run directory as a DataFrame, with its session's metadata as columns.

    ``path`` is a run directory (or its ``measurements.jsonl``), or a ``pytest --benchmark-json``
    file, read directly. Columns include ``problem``,
    ``op``, the shape fields, ``backend``, ``direction``, ``dtype``, ``threads``, ``status``,
    ``median_s``, ``iqr_s``, ``min_s``, ``fastest_s``, ``calls``, ``gflops`` and the session's ``cpu`` and
    versions.
    """
    path = Path(path)
    if is_benchmark_json(path):
        return read_benchmark_json(path)
    run = RunDirectory(path.parent if path.name == MEASUREMENTS else path)
    if not (run.path / MEASUREMENTS).exists():
        raise RunError(f"{run.path} holds no {MEASUREMENTS}: is it a convbench run directory?")
    frame, records = pd.DataFrame(run.rows()), run.sessions()
    sessions = pd.DataFrame(records)
    if frame.empty or sessions.empty:
        return frame
    sessions = sessions[[c for c in sessions.columns if c == "session" or c not in frame.columns]]
    frame = frame.merge(sessions, on="session", how="left")
    # a run none of whose measurements was timed (all skipped, say) still has the timed columns
    frame = frame.reindex(columns=[*frame.columns, *(c for c in TIMED_COLUMNS if c not in frame.columns)])
    return _rated_by(frame, best_peaks(records))


def best_peaks(sessions: list[dict]) -> dict[tuple, tuple[float, float]]:
    """(machine, threads) -> (SGEMM GFLOP/s, copy GB/s): the best each session of a run probed.
    A session probes them in half a second when it starts, and a moment when the host shares the
    cores reads low (43 against 84 GFLOP/s in two sessions of one run, AMD EPYC, 2 threads, f7817f0): the
    machine's peak is the best of them, and a row's share of the peak is of that one."""
    best: dict[tuple, tuple[float, float]] = {}
    for s in sessions:
        peaks = s.get("peaks") if isinstance(s.get("peaks"), dict) else {}
        for threads, p in peaks.items():
            if not (isinstance(p, dict) and str(threads).isdigit()
                    and all(_is_number(p.get(k)) for k in ("sgemm_gflops", "copy_gbs"))):
                continue
            key = (s.get("machine"), int(threads))
            old = best.get(key, (0.0, 0.0))
            best[key] = (max(old[0], p["sgemm_gflops"]), max(old[1], p["copy_gbs"]))
    return best


def _rated_by(frame: pd.DataFrame, best: dict[tuple, tuple[float, float]]) -> pd.DataFrame:
    """``frame`` with each row's peaks the best of its machine and thread count (``best_peaks``),
    where it has any, and its ``pct_of_peak`` of them."""
    if not best or "machine" not in frame:
        return frame
    keys = list(zip(frame["machine"], frame["threads"]))
    found = [k in best for k in keys]
    frame = frame.copy()
    frame.loc[found, "peak_gflops"] = [best[k][0] for k, f in zip(keys, found) if f]
    frame.loc[found, "bandwidth_gbs"] = [best[k][1] for k, f in zip(keys, found) if f]
    frame["pct_of_peak"] = 100 * frame["gflops"] / frame["peak_gflops"]
    return frame
