"""Every fact the Lua scripts share with Python is Python's: no script spells a key name, a field
width, an attribution letter or a separator of its own. The forbidden literals are made from the
Python definitions themselves, so a new key or width is guarded as soon as it is defined."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from releng_hardware.store import history, keys, peers
from releng_hardware.store.scripts import PRELUDE, lua_literal, part, script

LUA = resources.files("releng_hardware.store") / "lua"
PARTS = sorted(path.name.removesuffix(".lua") for path in LUA.iterdir() if path.name.endswith(".lua"))
# A Lua string literal, or a comment (skipped, so that a comment may name what it is about).
TOKEN = re.compile(r"""--[^\n]*|'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)\"""")
ESCAPE = re.compile(r"\\(\d{1,3}|.)")
NAMED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return chr(int(code)) if code.isdigit() and code != "0" else NAMED_ESCAPES.get(code, code)
    return ESCAPE.sub(one, text)


def string_literals(source: str) -> list[str]:
    """The string literals of a Lua source, outside comments, as the strings they make."""
    return [unescape(match.group(1) if match.group(1) is not None else match.group(2))
            for match in TOKEN.finditer(source) if not match.group(0).startswith("--")]


def widths() -> set[int]:
    return ({width for _, width, _ in history.FIELDS if width}
            | {width for _, width in peers.PEER_FIELDS if width})


def forbidden(literal: str) -> str | None:
    """What Python definition `literal` duplicates, or None."""
    names = keys.lua_key_names().values()
    if literal in names or any(literal.startswith(name) and name.endswith(":") for name in names):
        return f"a key name ({literal!r}: keys.Keys, KEY in the prelude)"
    if literal in history.ATTRIBUTIONS:
        return f"an attribution letter ({literal!r}: history.ATTRIBUTIONS)"
    if literal == history.NO_LABEL:
        return "history.NO_LABEL"
    if keys.GROUP_SEPARATOR in literal or keys.ORDER_SEPARATOR in literal:
        return f"a separator ({literal!r}: keys.GROUP_SEPARATOR, keys.ORDER_SEPARATOR)"
    width = re.fullmatch(r"%0(\d+)d", literal)
    if width and int(width.group(1)) in widths():
        return f"a field width ({literal!r}: history.FIELDS, peers.PEER_FIELDS)"
    return None


@pytest.mark.parametrize("name", PARTS)
def test_no_script_spells_a_fact_python_defines(name):
    found = {literal: why for literal in string_literals(part(name)) if (why := forbidden(literal))}
    assert found == {}, f"lua/{name}.lua spells what Python defines: {found}"


def test_the_check_finds_what_it_looks_for():
    source = ("local a = prefix .. 'index:seen:' .. g -- 'machines' in a comment is fine\n"
              "local b, c = 'T', string.format('%010d', 3)\nlocal d = x .. '\\t' .. \"label:\" .. r\n")
    assert [literal for literal in string_literals(source) if forbidden(literal)] == [
        "index:seen:", "T", "%010d", "\t", "label:"]


def test_the_prelude_spells_the_python_values():
    assert lua_literal("\t\0a'b") == "'\\9\\0a\\39b'"
    for name in ("machines", "label", "index_seen", "legacy_runs"):
        assert f"{name} = {lua_literal(keys.lua_key_names()[name])}" in PRELUDE
    assert all(script(name).startswith(PRELUDE) for name in PARTS)
