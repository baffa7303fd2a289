"""``convbench compare OLD NEW``: a statistical verdict per measurement, and whether the machine
itself changed speed in between.

Measurements are matched on (suite, problem, batch, backend, direction, dtype, threads). Each
verdict comes from the two rows' raw samples (``convbench.bench.stats.verdict``): the ratio NEW /
OLD of their processes' fastest calls (geometric mean over processes) with a 95 % interval over
processes, called ``slower`` or ``faster`` only when the whole interval lies beyond
``threshold`` and each side was measured by at least 3 processes, ``same`` when it lies within,
and ``inconclusive`` otherwise (too noisy for the threshold, too few samples or processes,
contended, no larger than the machine's own drift). The drift is the ratio of the calibration
workload's fastest times, measured on the rows' threads before every turn of both runs, process
by process; for pytest-benchmark files, whose benchmarks are each timed in one stretch, it is
the widest ratio between the calibrations measured before each benchmark (``machine_swing``).
The ratio of medians is shown beside it, for the reader. A ``slower`` verdict is a regression, and so is a measurement that was
``ok`` in OLD and is ``wrong`` or ``error`` in NEW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from convbench.bench import stats
from convbench.bench.formats import banner, in_unit, time_unit
from convbench.bench.results import (
    benchmark_calibration,
    is_benchmark_json,
    load_calibration,
    load_results,
    machine_line,
)

KEY = ["suite", "problem", "N", "backend", "direction", "dtype", "threads"]
STEADY = 0.03  # a calibration ratio whose interval lies within 1 ± this: the machine held its speed


def machine_drift(old: list[list[float]], new: list[list[float]]) -> tuple[tuple[float, float], str]:
    """(the interval of the machine's own change of speed to allow for, a sentence saying what the
    calibration workload saw); ``old`` and ``new`` hold each process's calibration times."""
    if old == new:
        return (1.0, 1.0), ("machine speed: steady by construction: both sides share one calibration timeline "
                            "(measured in turns by `convbench ab`, or the same run), so the machine's drift "
                            "fell on both alike")
    ratio, low, high = stats.ratio_interval(old, new)
    if not np.isfinite(low):
        return (1.0, 1.0), ("machine speed: not known (a side has fewer than 2 processes' calibrations), "
                            "so a change of machine cannot be told from a change of code")
    seen = (f"calibration workload NEW/OLD {ratio:.3f} [{low:.3f}, {high:.3f}] ({len(old)} and {len(new)} "
            "processes); a change of code must reach beyond that interval to be called one")
    if 1 / (1 + STEADY) <= low and high <= 1 + STEADY:
        return (low, high), f"machine speed: steady (within {STEADY:.0%}); {seen}"
    if low > 1 + STEADY or high < 1 / (1 + STEADY):
        direction = "slower" if ratio > 1 else "faster"
        return (low, high), f"machine speed: CHANGED, the machine itself ran {abs(ratio - 1):.0%} {direction} in NEW; {seen}"
    return (low, high), f"machine speed: uncertain; {seen}"


def machine_swing(old: list[list[float]], new: list[list[float]]) -> tuple[tuple[float, float], str]:
    """The allowance for measurements each taken in one stretch (pytest-benchmark times a
    benchmark's rounds back to back, for about a second): such a row met one moment of the
    machine, any of them, so the change to allow for is the widest ratio of the calibration
    workload between a moment of NEW and a moment of OLD, not the drift of the whole run."""
    old, new = [t for p in old for t in p], [t for p in new for t in p]
    if min(len(old), len(new)) < 3:
        return (1.0, 1.0), ("machine speed: not known (a side has fewer than 3 calibration measurements), "
                            "so a change of machine cannot be told from a change of code")
    low, high = min(new) / max(old), max(new) / min(old)
    return (low, high), (
        "machine speed: each benchmark was timed in one stretch (pytest-benchmark), so it met one moment of "
        f"the machine; the calibration workload, measured before each ({len(old)} and {len(new)} times), "
        f"put NEW/OLD anywhere in [{low:.3f}, {high:.3f}] between moments, and a change of code must reach "
        "beyond that to be called one (for finer verdicts, `convbench ab` measures in turns)")


def _calibration(path: str | Path, frame: pd.DataFrame, threads: int, machine: str | None = None) -> list[list[float]]:
    """The calibration of ``path`` on ``threads`` (and ``machine``); a pytest-benchmark file's from its rows."""
    if is_benchmark_json(path):
        return benchmark_calibration(frame, threads)
    return load_calibration(path, threads, machine)


def machines(frame: pd.DataFrame) -> list[str]:
    """The machines a run's rows name (none for runs older than machine names, and for
    pytest-benchmark files)."""
    return sorted(frame["machine"].dropna().unique()) if "machine" in frame else []


def _match_key(a: pd.DataFrame, b: pd.DataFrame, old, new, across_machines: bool) -> list[str]:
    """The columns rows are matched on, machines included: rows measured on different machines
    are compared only when asked (``across_machines``), and then only one machine against one."""
    on_a, on_b = machines(a), machines(b)
    if not on_a or not on_b:  # a side that does not name machines: matched as before
        return KEY
    if across_machines:
        if len(on_a) > 1 or len(on_b) > 1:
            raise ValueError(f"--across-machines compares one machine with one; {old} holds {', '.join(on_a)} "
                             f"and {new} holds {', '.join(on_b)}")
        return KEY
    if not set(on_a) & set(on_b):
        raise ValueError(f"{old} was measured on {', '.join(on_a)} and {new} on {', '.join(on_b)}: the "
                         "difference would be the machines' as much as the code's; give --across-machines "
                         "to compare them all the same")
    return ["machine", *KEY]


def _samples(row, side: str) -> list[list[float]]:
    """A side's per-process, per-turn fastest calls."""
    value = getattr(row, f"turn_fastest_s_{side}", None)
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


def _flag(row, name: str, side: str) -> bool:
    value = getattr(row, f"{name}_{side}", False)
    return bool(value) if isinstance(value, (bool, np.bool_)) else False


def _where(machine: str | None, threads) -> str:
    return f"{machine}, {threads:g} thread(s): " if machine else f"{threads:g} thread(s): "


def compare(old: str | Path, new: str | Path, threshold: float = 0.10,
            across_machines: bool = False) -> tuple[str, int]:
    """A Markdown report of NEW against OLD, and how many regressions it holds. Rows are matched
    machine by machine; rows of different machines only with ``across_machines``."""
    if not threshold >= 0:
        raise ValueError(f"--threshold must be a number >= 0; got {threshold}")
    raw_a, raw_b = load_results(old), load_results(new)
    key = _match_key(raw_a, raw_b, old, new, across_machines)
    columns = key + ["status", "median_s", "fastest_s", "turn_fastest_s", "contended"]
    a, b = (frame.reindex(columns=columns) for frame in (raw_a, raw_b))
    merged = a.merge(b, on=key, suffixes=("_old", "_new"))
    if merged.empty:
        raise ValueError(f"{old} and {new} share no measurement (same {'machine, ' if 'machine' in key else ''}"
                         "suite, problem, batch, backend, direction, dtype and threads)")
    if "machine" not in merged:
        merged["machine"] = None
    # (machine, threads) -> (interval, sentence): the calibration is measured on the rows' machine and threads
    allowance = machine_swing if is_benchmark_json(old) or is_benchmark_json(new) else machine_drift
    by_machine = "machine" in key
    # a run of several machines (a cluster run) has its calibrations told apart by session
    split_a, split_b = (by_machine and len(machines(raw)) > 1 for raw in (raw_a, raw_b))
    machine_column = by_machine and len(machines(merged)) > 1
    drifts = {(m, t): allowance(_calibration(old, raw_a, int(t), m if split_a else None),
                                _calibration(new, raw_b, int(t), m if split_b else None))
              for m, t in merged[["machine", "threads"]].drop_duplicates().itertuples(index=False)}
    judged = [_judge(r, threshold, drifts[r.machine, r.threads][0], machine_column)
              for r in merged.itertuples()]
    regressions = sum(regression for _, regression in judged)
    table = pd.DataFrame([row for row, _ in judged])
    counts = table.verdict.str.replace(" (REGRESSION)", "", regex=False).value_counts()
    contended = int(table.why.str.startswith("contended").sum())
    sides = [machine_line(raw_a), machine_line(raw_b)]
    warning = "\n".join(banner(pd.concat([raw_a, raw_b], ignore_index=True), "the compared measurements"))
    head = ((sides[0] if sides[0] == sides[1] else f"OLD: {sides[0]}\n\nNEW: {sides[1]}") + "\n\n" + warning
            + f"{len(table)} measurements compared: " + ", ".join(f"{n} {v}" for v, n in counts.items())
            + f"; {regressions} regression(s) beyond {threshold:.0%}."
            + (f" {contended} measured while other processes held the cores (contended)." if contended else "")
            + "".join(f"\n\n{'' if len(drifts) == 1 else _where(m, t)}{sentence}."
                      for (m, t), (_, sentence) in drifts.items()))
    if not table.why.astype(bool).any():
        table = table.drop(columns="why")
    return head + "\n\n" + table.to_markdown(index=False) + "\n", regressions


def _judge(r, threshold: float, drift: float, machine_column: bool) -> tuple[dict, bool]:
    """One matched pair of rows as a line of the comparison table (its two times in one unit, the
    one that suits them), and whether it is a regression."""
    if r.status_old == "ok" and r.status_new == "ok":
        old_samples, new_samples = _samples(r, "old"), _samples(r, "new")
        if old_samples and new_samples:
            v = stats.verdict(old_samples, new_samples, threshold, drift=drift,
                              contended=_flag(r, "contended", "old") or _flag(r, "contended", "new"))
        else:
            v = stats.Verdict("inconclusive", r.median_s_new / r.median_s_old, float("nan"), float("nan"),
                              "no per-turn samples (a schema 1 run): measure again")
        word, regression = v.word, v.word == "slower"
        unit = time_unit([r.fastest_s_old, r.fastest_s_new])
        cells = (f"{in_unit(r.fastest_s_old, unit)} {unit[0]}", f"{in_unit(r.fastest_s_new, unit)} {unit[0]}",
                 f"{v.ratio:.3f}", v.interval, f"{r.median_s_new / r.median_s_old:.3f}")
        note = v.reason
    else:
        word = f"{r.status_old} -> {r.status_new}"
        regression = r.status_old == "ok" and r.status_new in ("wrong", "error")
        cells, note = ("-", "-", "-", "-", "-"), ""
    return {**({"machine": r.machine} if machine_column else {}), "suite": r.suite, "problem": r.problem,
            "backend": r.backend, "direction": r.direction, "dtype": r.dtype, "threads": r.threads,
            "old fastest": cells[0], "new fastest": cells[1], "new/old": cells[2],
            "95% interval": cells[3], "medians new/old": cells[4],
            "verdict": word + (" (REGRESSION)" if regression else ""), "why": note}, regression
