"""The documentation a newcomer starts from stays true to the repository."""

from __future__ import annotations

import re

import releng_hardware
from tests.conftest import ROOT

DOCS = ("README.md", "tests/README.md", "bench/README.md", "docs/runbook.md",
        "docs/reliability.md", "docs/performance.md")


def test_the_package_docstring_names_every_module():
    modules = sorted(path.stem for path in (ROOT / "releng_hardware").glob("*.py")
                     if path.stem != "__init__")
    listed = set(re.findall(r"^    (\w+) ", releng_hardware.__doc__, re.MULTILINE))
    missing = [name for name in modules if name not in listed]
    gone = sorted(listed - set(modules))
    assert not missing, f"releng_hardware/__init__.py's module list lacks {missing}: add a line each"
    assert not gone, f"releng_hardware/__init__.py lists modules that no longer exist: {gone}"


def test_relative_links_in_the_docs_lead_to_files_of_the_repository():
    for doc in DOCS:
        path = ROOT / doc
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{doc} links to {target}, which does not exist"
