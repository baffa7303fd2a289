"""Problem suites: CSV tables shipped in ``convbench/bench/suites/``, or oneDNN benchdnn batch files.

A suite CSV has one named layer per row::

    name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat
    conv1,conv2d,1,3,224,224,64,7,7,2,3,1,1,1

``stride``, ``padding`` and ``dilation`` are an int or ``HxW`` (``2x1``); for pooling rows K
equals C and (R, S) is the window. ``repeat`` counts how often the layer occurs in its model.
Suites are append-only: a row's name and shape never change once published.

A benchdnn batch file is read as benchdnn reads it (``convbench.bench.suites.benchdnn``): what
convbench cannot run in it is skipped and counted, and ``read_suite`` returns those counts.
"""

from __future__ import annotations

import csv
import re
from importlib import resources
from pathlib import Path

from convbench.bench.errors import clip
from convbench.bench.problems import OPS, Problem
from convbench.bench.suites.benchdnn import Reading, parse_descriptor, read_benchdnn
from convbench.bench.suites.files import SuiteError, integer, read_text

__all__ = ["Reading", "SuiteError", "load_suite", "parse_descriptor", "read_benchdnn", "read_csv", "read_suite",
           "suite_names"]

COLUMNS = ("name", "op", "N", "C", "H", "W", "K", "R", "S", "stride", "padding", "dilation", "groups", "repeat")


def suite_names() -> list[str]:
    """The suites shipped with convbench."""
    return sorted(p.name.removesuffix(".csv") for p in resources.files("convbench.bench.suites").iterdir()
                  if p.name.endswith(".csv"))


def _pair(text: str, where: str, field: str, minimum: int) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    if len(parts) > 2:
        raise SuiteError(f"{where}: field {field!r} must be an int or HxW; got {clip(repr(text), 80)}")
    values = [integer(p, where, field, minimum) for p in parts]
    return (values[0], values[-1])


def _problem(where: str, **fields) -> Problem:
    try:
        return Problem(**fields)
    except ValueError as exc:
        raise SuiteError(f"{where}: {exc}") from None


def read_csv(path: str | Path, text: str | None = None) -> list[Problem]:
    """Problems from a suite CSV (``text`` instead of reading ``path``, if given)."""
    text = read_text(path) if text is None else text
    try:
        return _read_rows(path, csv.DictReader(text.splitlines()))
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte
        raise SuiteError(f"{path}: not a readable CSV ({clip(str(exc))})") from None


def _read_rows(path, reader: csv.DictReader) -> list[Problem]:
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SuiteError(f"{path}:1: the header lacks the column(s) {', '.join(clip(c, 40) for c in missing)}")
    problems, seen = [], set()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or None in row.values():  # csv.DictReader's marks of extra and missing fields
            count = f"{len(reader.fieldnames) + len(row[None])}" if None in row else "fewer"
            raise SuiteError(f"{where}: {count} fields where the header has {len(reader.fieldnames)}")
        name = (row["name"] or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise SuiteError(f"{where}: field 'name' must be letters, digits, '_', '.' or '-'; got {clip(name, 80)!r}")
        if name in seen:
            raise SuiteError(f"{where}: field 'name': {name!r} appears twice")
        seen.add(name)
        if row["op"] not in OPS:
            raise SuiteError(f"{where}: field 'op' must be one of {', '.join(OPS)}; got {clip(repr(row['op']), 80)}")
        ints = {f: integer(row[f], where, f, 1) for f in ("N", "C", "H", "W", "K", "R", "S", "groups", "repeat")}
        problems.append(_problem(
            where, name=name, op=row["op"], **ints,
            stride=_pair(row["stride"], where, "stride", 1),
            padding=_pair(row["padding"], where, "padding", 0),
            dilation=_pair(row["dilation"], where, "dilation", 1),
        ))
    return problems


def read_suite(name_or_path: str, batch: int | None = None, strict: bool = False) -> Reading:
    """A shipped suite by name, or a suite CSV or benchdnn file by path; ``batch`` overrides N;
    ``strict``: refuse a benchdnn file that holds what convbench cannot run, rather than skip it."""
    if name_or_path in suite_names():
        text = resources.files("convbench.bench.suites").joinpath(f"{name_or_path}.csv").read_text()
        reading = Reading(read_csv(f"suites/{name_or_path}.csv", text))
    elif Path(name_or_path).is_file():
        path = Path(name_or_path)
        text = read_text(path)
        first = text.lstrip().split(",", 1)[0]
        reading = Reading(read_csv(path, text)) if first == "name" else read_benchdnn(path, text, strict, batch)
    else:
        raise SuiteError(
            f"suite {clip(repr(name_or_path), 120)} is neither a shipped suite ({', '.join(suite_names())}) nor a file"
        )
    if not reading.problems:
        why = "; ".join(reading.lines()[:3])
        raise SuiteError(f"suite {clip(repr(name_or_path), 120)} holds no problem convbench can run" + (f": {why}" if why else ""))
    if batch:
        reading.problems = [p.with_batch(batch) for p in reading.problems]
    return reading


def load_suite(name_or_path: str, batch: int | None = None) -> list[Problem]:
    """The problems of ``read_suite``."""
    return read_suite(name_or_path, batch).problems
