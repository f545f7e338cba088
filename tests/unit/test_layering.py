"""The package's map is its import rule: a module imports only modules listed before it.

The map is the module list in `releng_hardware/__init__.py`'s docstring (a name at the start of
an indented line, then what the module owns). This test reads nothing else, so a new module
needs only its line in the map, put where its imports allow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import releng_hardware

PACKAGE = Path(releng_hardware.__file__).resolve().parent
NAME = releng_hardware.__name__


def module_map() -> list[str]:
    """The modules in the order the package docstring lists them."""
    return re.findall(r"^    (\w+) ", releng_hardware.__doc__ or "", re.MULTILINE)


def package_modules() -> dict[str, Path]:
    """Every module of the package (a .py file, or a subpackage) -> its source files."""
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    modules.update({path.parent.name: path.parent for path in PACKAGE.glob("*/__init__.py")})
    return modules


def imported_modules(source: str, modules: set[str], *, depth: int = 0) -> set[str]:
    """The package's modules that `source` imports, at module level or inside functions.

    `from . import x` names module x; `from .x import y` and `from .x.y import z` name x;
    absolute `releng_hardware.x` forms count the same. Names that are no module of the
    package (`from . import __version__`) are the package itself, which every module may use.
    `depth` is how far below the package the file is (1 in a subpackage): its relative imports
    of its own subpackage stay inside one module. An `if __name__ == "__main__":` block is
    left out: it runs only when the module is the program (`python -m releng_hardware.x`),
    an entry point like the scripts at the top of the repository, which call into cli.
    """
    found: set[str] = set()
    body = [node for node in ast.parse(source).body if not _runs_as_program(node)]
    for node in (inner for statement in body for inner in ast.walk(statement)):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.level - depth != 1:
                continue
            if node.level:
                parts = (node.module or "").split(".") if node.module else []
            elif node.module and (node.module == NAME or node.module.startswith(NAME + ".")):
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts and parts[0]:
                found.add(parts[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME + "."):
                    found.add(alias.name.split(".")[1])
    return found & modules


def _runs_as_program(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and ast.unparse(node.test) in ('__name__ == "__main__"', "__name__ == '__main__'"))


def sources(path: Path) -> list[Path]:
    """The source files of a module: the file, or every file of a subpackage."""
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def test_the_map_lists_every_module_once_and_nothing_else():
    listed = module_map()
    modules = package_modules()
    missing = sorted(set(modules) - set(listed))
    gone = sorted(set(listed) - set(modules))
    repeated = sorted({name for name in listed if listed.count(name) > 1})
    assert not missing, f"releng_hardware/__init__.py's module map lacks {missing}: add a line each"
    assert not gone, f"releng_hardware/__init__.py's map lists modules that do not exist: {gone}"
    assert not repeated, f"releng_hardware/__init__.py's map lists {repeated} more than once"


def test_every_module_imports_only_modules_listed_before_it():
    order = {name: position for position, name in enumerate(module_map())}
    modules = package_modules()
    upward = []
    for name, path in sorted(modules.items()):
        for source in sources(path):
            depth = len(source.relative_to(PACKAGE).parts) - 1
            for imported in sorted(imported_modules(source.read_text(), set(modules), depth=depth)):
                if imported != name and order.get(imported, -1) >= order.get(name, -1):
                    upward.append(f"{source.relative_to(PACKAGE.parent)} imports {imported}, "
                                  f"listed after {name}")
    assert not upward, ("imports flow down the map in releng_hardware/__init__.py; move the "
                        "code, or the module's line, so that they do:\n  " + "\n  ".join(upward))


def test_the_import_reader_sees_every_form():
    modules = {"store", "times", "events", "cli", "config"}
    source = ("from . import times\n"
              "from .store import Store\n"
              "from .events.parse import parse\n"
              "import releng_hardware.config\n"
              "from . import __version__\n"
              "import redis\n"
              "def f():\n"
              "    from .cli import fail\n")
    assert imported_modules(source, modules) == {"times", "store", "events", "config", "cli"}
    program = "from . import times\nif __name__ == '__main__':\n    from .cli import main\n"
    assert imported_modules(program, modules) == {"times"}
