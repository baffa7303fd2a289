"""The house's rooms stay apart: the import contracts (import-linter, configured in
pyproject.toml) and no private name taken across a package boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
# Code outside the packages that uses them as any user would (tests/ may reach inside).
USERS = ["benchmarks", "scripts", "tests/benchmarks"]


def room(path: Path) -> str:
    """The package a file belongs to: kernels, convbench.bench, convbench.cnn, convbench, or
    the folder of a user of them."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "convbench" and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ("kernels", "convbench") else "/".join(parts[:-1])


def private_imports(path: Path, source: str | None = None) -> list[str]:
    """``from X import _name`` and imports of ``X._module`` that leave ``path``'s package."""
    here, found = room(path), []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] not in ("kernels", "convbench"):
                continue
            there = ".".join(parts[:2]) if parts[0] == "convbench" and parts[1:2] in (["bench"], ["cnn"]) else parts[0]
            private = [p for p in parts[1:] if p.startswith("_") and not p.startswith("__")]
            if private and there != here:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    return found


def python_files() -> list[Path]:
    folders = ["kernels", "convbench", *USERS]
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if ".asv" not in p.parts)


def test_the_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_no_import_cycle():
    """No module imports, directly or through others, a module that imports it (lazy imports
    inside functions count: a cycle is a knot whichever import runs first)."""
    graph = grimp.build_graph("convbench", "kernels")
    knots = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                knots.append(" -> ".join([module, *back]))
    assert knots == []


def test_no_private_name_crosses_a_package_boundary():
    assert [line for path in python_files() for line in private_imports(path)] == []


@pytest.mark.parametrize("source, bad", [
    ("from kernels._checks import ShapeError\n", True),
    ("from convbench.cnn.step import _batch\n", True),
    ("import kernels._phases\n", True),
    ("from kernels import phases, traits\n", False),
    ("from convbench.bench.report import duration\n", False),
])
def test_the_private_import_check_sees_them(source, bad):
    assert bool(private_imports(ROOT / "scripts" / "probe.py", source)) is bad


def test_the_command_line_only_parses():
    """cli/ declares arguments and calls the rooms: no function there is longer than 30 lines."""
    long = []
    for path in sorted((ROOT / "convbench" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 30:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def _functions(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def test_no_function_of_convbench_is_longer_than_60_lines():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, node in _functions(ROOT / "convbench") if node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def _reads_the_clock_in_a_loop(function: ast.AST) -> bool:
    """Whether a loop (not its condition) of ``function`` itself reads ``perf_counter``."""
    for loop in ast.walk(function):
        if isinstance(loop, (ast.For, ast.While)):
            for node in (n for statement in loop.body for n in ast.walk(statement)):
                if isinstance(node, ast.Attribute) and node.attr == "perf_counter":
                    return True
    return False


def test_the_harness_has_one_timing_loop():
    """Every measurement of convbench times its calls with ``abworker.call_times``; the only other
    loop that reads the clock is the trainer's, which adds up its training time as it goes."""
    loops = {f"{path.stem}.{node.name}" for path, node in _functions(ROOT / "convbench")
             if _reads_the_clock_in_a_loop(node) and not any(
                 _reads_the_clock_in_a_loop(inner) for inner in ast.walk(node) if inner is not node
                 and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)))}
    assert loops == {"abworker.call_times", "train._epoch"}
