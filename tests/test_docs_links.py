"""Links of the documentation: every relative link of README.md and docs/*.md names a file that exists, and every
``#anchor`` a heading of the page it points to, as GitHub names headings (github-slugger: lower case,
punctuation dropped, each space a hyphen, a repeated heading's anchor suffixed -1, -2, ...)."""

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a markdown link or image: ](target) or ](target "title")
LINK = re.compile(r"\]\(([^)\s]+)(?: \"[^\"]*\")?\)")


def outside_code(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


@functools.cache  # a page is read once, however many links point into it
def anchors(page: Path) -> frozenset[str]:
    """The anchors GitHub gives the headings of ``page``."""
    found, seen = set(), {}
    for line in outside_code(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6} +(.*?) *$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def test_the_anchors_follow_githubs_rule():
    page = ROOT / "docs" / "sparse_annotation.md"
    names = anchors(page)
    assert "densify-training-length-held-back-scores-and-thin-classes" in names
    # punctuation and code marks go, the hyphens of the code and of the spaces around it stay
    assert "membranes-one-voxel-thick-fainter-intensity-13---volume-thin" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(page):
    broken = []
    for line in outside_code(page.read_text(encoding="utf-8")):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue  # another site
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no file {file}")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{target}: no heading of {file.name} has the anchor #{anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)
