"""The front page and docs/ cannot point at nothing (every relative link and image resolves), nor
show figures other than those of results/ (scripts/docs_figures.py writes them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from untimed import not_timed

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    targets = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())]
    missing = [t for t in targets if not t.startswith(("http://", "https://", "mailto:")) and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to what does not exist: {missing}"


def test_the_front_page_stays_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160


@pytest.mark.subprocess
def test_the_figures_of_the_pages_are_those_of_results():
    """Every figures part of README.md and docs/ is what scripts/docs_figures.py writes from results/."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_figures.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _docs_figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    return figures


def test_a_figure_edited_by_hand_is_caught():
    figures = _docs_figures()
    page = "intro\n<!-- figures:mnist -->\n| naive | 99.99 % |\n<!-- /figures -->\nend\n"
    written = figures.render(page, ROOT / "results")
    assert written != page and written.startswith("intro\n<!-- figures:mnist -->\n| backend")
    assert written.endswith("<!-- /figures -->\nend\n") and figures.render(written, ROOT / "results") == written


QUICK_LAYERS = re.search(r"QUICK_MATCH='([^']+)'", (ROOT / "scripts" / "quick.sh").read_text()).group(1)
@pytest.mark.parametrize("change", [
    pytest.param(lambda i, r: r if r["direction"] == "step" or re.search(QUICK_LAYERS, r["problem"]) else None,
                 id="only-the-layers-of-quick"),
    pytest.param(lambda i, r: r if r["backend"] != "numba" else None, id="no-numba"),
    pytest.param(lambda i, r: r if r["backend"] != "torch" else None, id="no-torch"),
    pytest.param(lambda i, r: not_timed(r) if i % 3 == 0 else r, id="every-third-row-not-timed"),
])
def test_the_figures_are_written_from_results_with_measurements_missing(tmp_path, change):
    """A reproduction at tiny budgets (``reproduce.sh --quick``), or one where a backend failed, still
    gets its pages written: a figure that was not measured shows as "-" instead of stopping the rest."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    for path in results.rglob("measurements.jsonl"):
        rows = [change(i, json.loads(line)) for i, line in enumerate(path.read_text().splitlines())]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows if r is not None))
    figures = _docs_figures()
    for page in PAGES:
        figures.render(page.read_text(), results)
