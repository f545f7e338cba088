"""The /machines JSON format read from a stream and validated, for a load into the store (Store.preload)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import orjson

from ..core.identifiers import is_identifier, machine_id
from ..core.times import MAX_CLOCK_SKEW, parse_time


class PreloadError(ValueError):
    """The input cannot be loaded; the message names the entry and the problem."""


def parse_entries(raw: bytes, now: datetime) -> dict[str, datetime]:
    """Machine id -> lastseen from /machines JSON; PreloadError on the first bad entry."""
    if not raw.strip():
        raise PreloadError("input is empty: expected the JSON array that /machines returns")
    lastseen_by_machine: dict[str, datetime] = {}
    for index, entry in machine_objects(raw, ("machine", "datacenter", "lastseen"), PreloadError):
        machine_id, lastseen = _entry(index, entry, now)
        if machine_id in lastseen_by_machine:
            raise PreloadError(f"entry {index}: {machine_id} appears twice in the input")
        lastseen_by_machine[machine_id] = lastseen
    return lastseen_by_machine


def machine_objects(raw: bytes | str, fields: tuple[str, ...],
                    error: type[ValueError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, entry) of a JSON array in the /machines shape, each entry an object with `fields`.

    Raises `error` naming the first entry that is not.
    """
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(f"input is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise error(f"expected a JSON array of machines, got a JSON {_kind(entries)}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise error(f"entry {index}: expected an object, got a JSON {_kind(entry)}")
        for name in fields:
            if name not in entry:
                raise error(f"entry {index}: missing field {name!r}")
        yield index, entry


def _entry(index: int, entry: dict[str, Any], now: datetime) -> tuple[str, datetime]:
    for name in ("machine", "datacenter"):
        value = entry[name]
        if not is_identifier(value):
            raise PreloadError(
                f"entry {index}: {name} {str(value)[:60]!r} is not a Taskcluster identifier")
    try:
        lastseen = parse_time(entry["lastseen"])
    except ValueError as exc:
        raise PreloadError(f"entry {index}: lastseen: {exc}") from None
    if lastseen - now > MAX_CLOCK_SKEW:
        raise PreloadError(f"entry {index}: lastseen {entry['lastseen']} is in the future")
    return machine_id(entry["datacenter"], entry["machine"]), lastseen


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")
