"""The front page and docs/ cannot point at nothing: every relative link and image resolves."""

from __future__ import annotations

import re
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
