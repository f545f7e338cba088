"""The static checks scripts/test runs before pytest: the project's own settings, and what they catch.

scripts/test itself runs `ruff check` and `mypy` over the tree (a finding fails the suite); these
tests keep their configuration honest.
"""

from __future__ import annotations

import configparser
import subprocess
import sys

import pytest

import releng_hardware
from tests.conftest import ROOT
from tests.unit.test_layering import package_modules

CLEAN = '"""A module."""\n\nfrom __future__ import annotations\n\nimport os\n\nPATH = os.sep\n'


def ruff(source: str, path: str = "releng_hardware/_probe.py") -> subprocess.CompletedProcess[str]:
    """ruff check over `source` as if it were the file at `path` (nothing is written)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
         "--stdin-filename", path, "-"],
        input=source, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_ruff_passes_a_clean_module():
    result = ruff(CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source, rule", [
    ('"""A module."""\n\nimport os\n', "F401"),  # unused import
    (CLEAN + f"NAME = '{'x' * 110}'\n", "E501"),  # over the 110 columns of ruff.toml
    (CLEAN + "ROWS = [lambda: row for row in range(3)]\n", "B023"),  # a loop variable in a closure
    (CLEAN + "PAIRS = list(zip('ab', 'cd'))\n", "B905"),  # zip without strict=
])
def test_ruff_with_the_projects_settings_reports(source, rule):
    result = ruff(source)
    assert result.returncode == 1
    assert f" {rule} " in result.stdout


def test_long_lines_are_allowed_in_tests_only():
    source = CLEAN + f"NAME = '{'x' * 110}'\n"
    assert ruff(source, "tests/unit/test_probe.py").returncode == 0
    assert ruff(source).returncode == 1


def test_every_module_mypy_holds_strict_exists():
    # a misspelt or renamed module would silently leave strict mode: mypy only notes the section
    config = configparser.ConfigParser()
    config.read(ROOT / "mypy.ini")
    strict = [section for section in config.sections() if config.getboolean(
        section, "disallow_untyped_defs", fallback=False)]
    names = [name.strip() for section in strict for name in section.removeprefix("mypy-").split(",")]
    assert names
    prefix = releng_hardware.__name__ + "."
    assert all(name.startswith(prefix) for name in names)
    assert {name.removeprefix(prefix) for name in names} <= set(package_modules())
