"""Every third-party module the package imports is a declared dependency: a range in
setup.py's install_requires (what `pip install .` brings) and a pin in requirements.txt (what
is deployed). A module that only arrives through another dependency can vanish with that
dependency's next release."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping

from tests.conftest import ROOT

PACKAGE = "releng_hardware"


def normalise(distribution: str) -> str:
    """A distribution's name as PEP 503 compares them (Flask, flask and FLASK are one)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_name(line: str) -> str:
    """The distribution a requirement line names (`hiredis>=2.0`, `fakeredis[lua]==2.41.0`)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    assert match, f"not a requirement: {line!r}"
    return normalise(match.group(1))


def imported_top_level_names(package: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Top-level module name -> the files importing it (absolute imports only: a relative
    import is the package itself)."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], []).append(path.relative_to(root).as_posix())
    return found


def install_requires(setup_py: Path) -> set[str]:
    """The distributions of setup()'s install_requires, read without running setup.py."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return {requirement_name(line) for line in ast.literal_eval(node.value)}
    raise AssertionError(f"{setup_py} has no install_requires")


def pinned(requirements_txt: Path) -> set[str]:
    """The distributions requirements.txt pins to one version (`name==version`)."""
    names = set()
    for line in requirements_txt.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            assert "==" in line, f"{requirements_txt.name}: {line!r} is not pinned to one version"
            names.add(requirement_name(line))
    return names


def undeclared(imports: Mapping[str, list[str]], distributions: Mapping[str, Iterable[str]],
               declared: set[str], pins: set[str]) -> list[str]:
    """One line per third-party import whose distribution is not both declared and pinned."""
    problems = []
    for name, files in sorted(imports.items()):
        if name == PACKAGE or name in sys.stdlib_module_names:
            continue
        owners = {normalise(owner) for owner in distributions.get(name, ())}
        where = ", ".join(sorted(set(files)))
        if not owners:
            problems.append(f"{name} (imported by {where}) belongs to no installed distribution")
            continue
        if not owners & declared:
            problems.append(f"{name} (imported by {where}): {' or '.join(sorted(owners))} "
                            "is not in setup.py's install_requires")
        if not owners & pins:
            problems.append(f"{name} (imported by {where}): {' or '.join(sorted(owners))} "
                            "is not pinned in requirements.txt")
    return problems


def test_every_third_party_import_is_declared_in_setup_py_and_pinned_in_requirements_txt():
    imports = imported_top_level_names(ROOT / PACKAGE)
    assert {"flask", "redis", "requests", "mohawk"} <= imports.keys()  # the reader reads
    problems = undeclared(imports, importlib.metadata.packages_distributions(),
                          install_requires(ROOT / "setup.py"), pinned(ROOT / "requirements.txt"))
    assert not problems, "\n".join(problems)


def test_an_import_only_another_dependency_brings_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("import os\nfrom . import b\nimport flask\nfrom werkzeug.exceptions import X\n"
                                  "import nowhere_installed\n")
    imports = imported_top_level_names(package, tmp_path)
    assert imports.keys() == {"os", "flask", "werkzeug", "nowhere_installed"}
    problems = undeclared(imports, {"flask": ["Flask"], "werkzeug": ["Werkzeug"]},
                          declared={"flask"}, pins={"flask", "werkzeug"})
    assert problems == [
        "nowhere_installed (imported by pkg/a.py) belongs to no installed distribution",
        "werkzeug (imported by pkg/a.py): werkzeug is not in setup.py's install_requires",
    ]

