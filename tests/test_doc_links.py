"""Every relative Markdown link of README.md and docs/**/*.md resolves: the file exists, and a
``#anchor`` names a heading of the target (GitHub's anchors: lower case, punctuation dropped,
spaces to hyphens, ``-1``, ``-2`` … for repeated headings) or an explicit ``<a id=…>``.

External links (``http:``, ``https:``, ``mailto:``) are not fetched. Links inside fenced code
blocks and inline code are not links on GitHub either, so they are skipped.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target ends at the first space (a title may follow)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s+(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code blanked."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append((i, INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line)))
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup and punctuation dropped, lower case,
    spaces to hyphens (letters of any script, digits, ``-`` and ``_`` kept)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")  # HTML tags, code marks
    text = text.strip().lower()
    kept = [
        c
        for c in text
        if c in " -_" or unicodedata.category(c)[0] in ("L", "N") or unicodedata.category(c) == "Mc"
    ]
    return "".join(kept).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        out.update(HTML_ID.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    # headings inside code spans were blanked above; read them from the raw text as well
    for line in page.read_text(encoding="utf-8").splitlines():
        m = HEADING.match(line)
        if m and "`" in m.group(2):
            out.add(github_slug(m.group(2)))
    return frozenset(out)


def links(page: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i, line in prose_lines(page.read_text(encoding="utf-8")):
        out += [(i, t) for t in LINK.findall(line)]
        m = REF_DEF.match(line)
        if m:
            out.append((i, m.group(1)))
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for line, target in links(page):
        if EXTERNAL.match(target) or target.startswith("//"):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(root)}:{line}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def test_slugs_follow_github() -> None:
    assert github_slug("Where we stand against the targets") == "where-we-stand-against-the-targets"
    assert github_slug("Verified here: `make stack-test`") == "verified-here-make-stack-test"
    assert github_slug("The baseline classifier: width and flip TTA (issue 10)") == (
        "the-baseline-classifier-width-and-flip-tta-issue-10"
    )
    assert github_slug("λ = 0.08, ≤ 80 B") == "λ--008--80-b"


def test_the_checker_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Title\n\n## Two words\n")
    page.write_text(
        "[ok](b.md#two-words) [file](c.md) [anchor](b.md#nope) `[code](x.md)`\n"
        "```\n[fenced](y.md)\n```\n[web](https://example.com/x.md)\n"
    )
    problems = broken_links(page, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "c.md: no such file",
        "b.md#nope: no heading with anchor #nope in b.md",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []
