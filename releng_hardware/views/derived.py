"""What the machine index's stored values are keyed by: a digest of the code that made them.

The judgements (index:judged, and from them index:counts and index:attention), the views
(index:views) and the groups' orders are made by Python (machine_index.judge_record and
encode_view, and every rule, field and format they call) and by the Lua scripts that keep the
index. A release that changes any of that must not serve what the one before stored, so the
index's fingerprint (machine_index.index_fingerprint) carries a digest of their source text:
the modules the makers import, followed transitively so that a new helper cannot be left out,
every script under store/lua, and the encoder's version. No number to remember to bump.

Following the imports takes in more than strictly makes a value (a module imported for a type):
that costs one rebuild of the index in bounded steps after such a release, where leaving one
out would serve the old release's bytes for every machine no message touched.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from importlib.util import resolve_name
from typing import Iterable, Mapping

import orjson

PACKAGE = __name__.partition(".")[0]
# The modules whose functions make what the index stores (dotted below the package).
MAKERS = ("views.machine_index",)
# Short enough for index:state, long enough that two releases never share one.
DIGEST_LENGTH = 16


def _source_of(module: str) -> str | None:
    """The source text of a module of the package (dotted below it), or None for no module."""
    parts = module.split(".")
    base: Traversable = resources.files(PACKAGE)
    for candidate in (base.joinpath(*parts[:-1], parts[-1] + ".py"),
                      base.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return None


def _imports(source: str, module: str) -> set[str]:
    """The package's names (dotted below it) that `source`, the text of `module`, imports."""
    package = ".".join((PACKAGE, *module.split(".")[:-1]))
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = (resolve_name("." * node.level + (node.module or ""), package) if node.level
                    else node.module or "")
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(target.removeprefix(PACKAGE + ".") for target in targets
                     if target.startswith(PACKAGE + "."))
    return found


def module_sources(roots: Iterable[str] = MAKERS) -> dict[str, str]:
    """The source text of `roots` and of every module of the package they import, transitively,
    by module (dotted below the package)."""
    sources: dict[str, str] = {}
    waiting = list(roots)
    while waiting:
        module = waiting.pop()
        if module in sources:
            continue
        source = _source_of(module)
        if source is None:  # a name imported from a module, not a module
            continue
        sources[module] = source
        waiting += _imports(source, module)
    return sources


def lua_sources() -> dict[str, str]:
    """Every Lua script of the store (store/lua/<name>.lua) by its path below the package."""
    scripts = resources.files(PACKAGE).joinpath("store", "lua")
    return {f"store/lua/{entry.name}": entry.read_text(encoding="utf-8")
            for entry in scripts.iterdir() if entry.name.endswith(".lua")}


def code_digest(sources: Mapping[str, str]) -> str:
    """A short hex digest of named texts: any change to a name or a text changes it."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(orjson.dumps([name, sources[name]]))
    return digest.hexdigest()[:DIGEST_LENGTH]


def derived_sources() -> dict[str, str]:
    """What the stored values are made by, by name: the makers' modules, the Lua scripts and
    the version of orjson, whose bytes index:views keeps."""
    return {**module_sources(), **lua_sources(), "orjson": orjson.__version__}


@cache
def release_digest() -> str:
    """code_digest of this release's derived_sources: read once per process."""
    return code_digest(derived_sources())
