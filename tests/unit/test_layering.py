"""The package's maps are its import rule: a module imports only what is listed before it.

The top map is the list in `releng_hardware/__init__.py`'s docstring: the subpackages and the
top-level modules, in the order imports flow. Each subpackage's docstring lists its own modules
the same way (a name at the start of an indented line, then what it owns). Between subpackages a
module imports only from those listed before its own; inside one, only modules listed before it.
This test reads nothing else, so a new module needs only its line in its map.
"""

from __future__ import annotations

import ast
import importlib
import re
from importlib.util import resolve_name
from pathlib import Path

import releng_hardware

PACKAGE = Path(releng_hardware.__file__).resolve().parent
NAME = releng_hardware.__name__


def listed(docstring: str | None) -> list[str]:
    """The names a map lists, in its order."""
    return re.findall(r"^    (\w+) ", docstring or "", re.MULTILINE)


def top_map() -> list[str]:
    return listed(releng_hardware.__doc__)


def subpackages() -> list[str]:
    return sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))


def sub_map(subpackage: str) -> list[str]:
    return listed(importlib.import_module(f"{NAME}.{subpackage}").__doc__)


def package_modules() -> dict[str, Path]:
    """Every module of the package, dotted below it ("store.machines", "cli") -> its file."""
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
            for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}


def imported_modules(source: str, package: str, modules: set[str]) -> set[str]:
    """The package's modules (dotted below it) that `source`, a module of `package` (dotted,
    "releng_hardware.store"), imports at module level or inside functions. `from . import x`
    names module x when there is one; a name that is no module is its package, which every
    module may use. An `if __name__ == "__main__":` block is left out: it runs only when the
    module is the program, an entry point like the scripts at the top of the repository."""
    found: set[str] = set()
    body = [node for node in ast.parse(source).body if not _runs_as_program(node)]
    for node in (inner for statement in body for inner in ast.walk(statement)):
        if isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith(NAME + "."):
                below = target.removeprefix(NAME + ".")
                while below and below not in modules:
                    below = below.rpartition(".")[0]
                if below:
                    found.add(below)
    return found


def _runs_as_program(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and ast.unparse(node.test) in ('__name__ == "__main__"', "__name__ == '__main__'"))


def _duplicates(names: list[str]) -> list[str]:
    return sorted({name for name in names if names.count(name) > 1})


def test_the_top_map_lists_every_subpackage_and_top_module_once():
    units = set(subpackages()) | {name for name in package_modules() if "." not in name}
    assert not sorted(units - set(top_map())), "releng_hardware/__init__.py's map lacks a line"
    assert not sorted(set(top_map()) - units), "releng_hardware/__init__.py lists what is not there"
    assert not _duplicates(top_map())


def test_each_subpackage_map_lists_its_modules_once_and_nothing_else():
    modules = package_modules()
    for subpackage in subpackages():
        own = {name.split(".")[1] for name in modules if name.startswith(subpackage + ".")}
        shown = sub_map(subpackage)
        assert set(shown) == own, f"releng_hardware/{subpackage}/__init__.py's map: {shown} vs {own}"
        assert not _duplicates(shown)


def test_every_subpackage_says_in_one_line_what_it_owns():
    for subpackage in subpackages():
        first = (importlib.import_module(f"{NAME}.{subpackage}").__doc__
                 or "").split("\n")[0]
        assert first.endswith(".") and len(first) > 20, f"{subpackage}: {first!r}"


def test_every_module_imports_only_what_is_listed_before_it():
    top = {name: at for at, name in enumerate(top_map())}
    inside = {sub: {name: at for at, name in enumerate(sub_map(sub))} for sub in subpackages()}
    modules = package_modules()

    def place(module: str) -> tuple[int, int]:
        unit, _, name = module.partition(".")
        return top[unit], inside[unit][name] if name else 0

    upward = []
    for module, path in sorted(modules.items()):
        package = ".".join([NAME, *module.split(".")[:-1]])
        for imported in sorted(imported_modules(path.read_text(), package, set(modules))):
            if imported != module and place(imported) >= place(module):
                upward.append(f"{module} imports {imported}, listed after it")
    assert not upward, ("imports flow down the maps (releng_hardware/__init__.py, then each "
                        "subpackage's); move the code, or the line, so that they do:\n  "
                        + "\n  ".join(upward))


def test_the_import_reader_sees_every_form():
    modules = {"store.machines", "store.history", "core.times", "core.config", "cli", "views.fleet"}
    source = ("from . import history\n"
              "from .machines import Store\n"
              "from ..core.times import utcnow\n"
              "import releng_hardware.core.config\n"
              "from .. import __version__\n"
              "from ..views import fleet as views\n"
              "import redis\n"
              "def f():\n"
              "    from ..cli import fail\n")
    assert imported_modules(source, f"{NAME}.store", modules) == {
        "store.history", "store.machines", "core.times", "core.config", "views.fleet", "cli"}
    program = "from . import history\nif __name__ == '__main__':\n    from ..cli import main\n"
    assert imported_modules(program, f"{NAME}.store", modules) == {"store.history"}


def blueprint_modules(subpackage: str = "web") -> list[str]:
    """The modules (dotted below the package) that a subpackage's map calls a blueprint."""
    doc = importlib.import_module(f"{NAME}.{subpackage}").__doc__ or ""
    return [f"{subpackage}.{name}"
            for name in re.findall(r"^    (\w+) +blueprint:", doc, re.MULTILINE)]


def _makes_a_blueprint(source: str) -> bool:
    return any(isinstance(node, ast.Call) and ast.unparse(node.func) == "Blueprint"
               for node in ast.walk(ast.parse(source)))


def test_the_web_map_marks_every_module_that_makes_a_blueprint():
    modules = package_modules()
    makers = sorted(name for name, path in modules.items()
                    if name.startswith("web.") and _makes_a_blueprint(path.read_text()))
    assert makers == sorted(blueprint_modules())
    assert {"web.api", "web.labels", "web.dashboard", "web.metrics", "web.openapi",
            "web.dockerflow"} <= set(makers)


def test_blueprint_modules_never_import_each_other():
    modules = package_modules()
    blueprints = set(blueprint_modules())
    crossing = [f"{module} imports {imported}"
                for module in sorted(blueprints)
                for imported in sorted(imported_modules(
                    modules[module].read_text(), f"{NAME}.web", set(modules)) & blueprints)
                if imported != module]
    assert not crossing, ("what blueprints share goes below them (web.responses, web.appstate "
                          "or views):\n  " + "\n  ".join(crossing))
