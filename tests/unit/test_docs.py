"""The documentation a newcomer starts from stays true to the repository."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

DOCS = sorted([ROOT / "README.md", ROOT / "tests" / "README.md", ROOT / "bench" / "README.md",
               *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]*)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(path: Path) -> set[str]:
    """The #fragments GitHub gives the headings of a Markdown file."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        # a repeated heading gets -1, -2, ... as GitHub numbers them
        anchor, number = slug, 0
        while anchor in found:
            number += 1
            anchor = f"{slug}-{number}"
        found.add(anchor)
    return found


def relative_links(path: Path) -> list[tuple[Path, str]]:
    """(target file, fragment or "") of every link of a Markdown file that is not a URL."""
    links = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        links.append((path.parent / file if file else path, fragment))
    return links


def test_relative_links_in_the_docs_lead_to_files_and_headings_of_the_repository():
    broken = []
    for doc in DOCS:
        for target, fragment in relative_links(doc):
            place = f"{doc.relative_to(ROOT)} links to {target.relative_to(ROOT)}"
            if not target.exists():
                broken.append(f"{place}, which does not exist")
            elif fragment and target.suffix == ".md" and fragment not in anchors(target):
                broken.append(f"{place}#{fragment}, a heading it does not have")
    assert not broken, "\n".join(broken)


def test_the_link_reader_sees_files_fragments_and_headings(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n## `GET /x`: one\n## Again\n## Again\n```\n# not a heading\n"
                   "[no](gone.md)\n```\n[a](other.md#part) [b](#again-1) [c](https://x.test/y)\n")
    assert anchors(doc) == {"title", "get-x-one", "again", "again-1"}
    assert relative_links(doc) == [(tmp_path / "other.md", "part"), (doc, "again-1")]


def test_the_configuration_table_is_in_one_place():
    # tests/unit/test_config.py checks that the table in docs/operations.md matches config.py
    holding = [doc.relative_to(ROOT).as_posix() for doc in DOCS
               if re.search(r"^\| `REDIS_URL` \|", doc.read_text(), re.MULTILINE)]
    assert holding == ["docs/operations.md"]
