"""Every relative link in README.md and docs/ points at a file that exists."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    targets = (match.group(1).split("#", 1)[0] for match in LINK.finditer(page.read_text()))
    return [target for target in targets if target and "://" not in target and not target.startswith("mailto:")]


def test_there_are_pages_with_links():
    assert len(PAGES) > 5 and any(relative_links(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    missing = [target for target in relative_links(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"
