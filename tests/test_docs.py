"""The front page and docs/ cannot point at nothing (every relative link and image resolves), nor
show figures other than those of results/ (scripts/docs_figures.py writes them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    targets = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())]
    missing = [t for t in targets if not t.startswith(("http://", "https://", "mailto:")) and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to what does not exist: {missing}"


def test_the_front_page_stays_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160


def test_the_figures_of_the_pages_are_those_of_results():
    """Every figures part of README.md and docs/ is what scripts/docs_figures.py writes from results/."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_figures.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_figure_edited_by_hand_is_caught():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "scripts" / "docs_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    page = "intro\n<!-- figures:mnist -->\n| naive | 99.99 % |\n<!-- /figures -->\nend\n"
    written = figures.render(page, ROOT / "results")
    assert written != page and written.startswith("intro\n<!-- figures:mnist -->\n| backend")
    assert written.endswith("<!-- /figures -->\nend\n") and figures.render(written, ROOT / "results") == written
