"""The Lua scripts as Redis runs them: lua/*.lua parts joined after one prelude of constants.

Every fact a script shares with Python is Python's: the prelude spells, as Lua `local`s made
from the Python values, the key names (keys), the separators of a group and of a machine order
member, and the attribution letters (history); the layouts that travel with a batch go in ARGV
(machines.BATCH_LAYOUT). A script only joins these to the prefix and the KEYS it is given, so
a script and Python cannot spell a fact two ways (tests/unit/test_lua_definitions.py).
The prelude is constants only: it costs a script nothing per call.
"""

from __future__ import annotations

from importlib import resources
from typing import Mapping

from . import history, keys
from ..core.records import SOURCE_TASKCLUSTER

LuaValue = str | int | Mapping[str, str]


def lua_literal(value: LuaValue) -> str:
    """`value` as a Lua literal: a string escaped byte by byte where not plain, or a table."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + "".join(char if char.isalnum() or char in " :-_/." else f"\\{ord(char)}"
                             for char in value) + "'"
    return "{" + ", ".join(f"{name} = {lua_literal(item)}" for name, item in value.items()) + "}"


# The constants every script starts with: name -> its Python value.
PRELUDE_CONSTANTS: dict[str, LuaValue] = {
    # key names and families, joined to the prefix by the scripts: KEY.machines, KEY.label, ...
    "KEY": keys.lua_key_names(),
    "GROUP_SEPARATOR": keys.GROUP_SEPARATOR,
    "ORDER_SEPARATOR": keys.ORDER_SEPARATOR,
    # an entry's attribution letters, weakest first: a judgement only rises
    "ATTRIBUTIONS": "".join(history.ATTRIBUTIONS),
    "NO_ATTRIBUTION": history.NO_ATTRIBUTION,
    "MACHINE_ATTRIBUTION": history.MACHINE_ATTRIBUTION,
    "TASK_ATTRIBUTION": history.TASK_ATTRIBUTION,
    "SOURCE_TASKCLUSTER": SOURCE_TASKCLUSTER,
}
PRELUDE = "".join(f"local {name} = {lua_literal(value)}\n"
                  for name, value in PRELUDE_CONSTANTS.items())


def part(name: str) -> str:
    """The Lua part lua/<name>.lua, shipped as package data."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def script(*names: str) -> str:
    """One script: the prelude, then the parts `names` in their order."""
    return PRELUDE + "".join(part(name) for name in names)
