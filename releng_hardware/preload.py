"""Load the /machines JSON format from a stream into Redis, all or nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from .store import Store
from .identifiers import is_identifier, machine_id
from .times import MAX_CLOCK_SKEW, parse_time


class PreloadError(ValueError):
    """The input cannot be loaded; the message names the entry and the problem."""


def parse_entries(raw: bytes, now: datetime) -> dict[str, datetime]:
    """Machine id -> lastseen from /machines JSON; PreloadError on the first bad entry."""
    if not raw.strip():
        raise PreloadError("input is empty: expected the JSON array that /machines returns")
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PreloadError(f"input is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise PreloadError(f"expected a JSON array of machines, got a JSON {_kind(entries)}")
    lastseen_by_machine: dict[str, datetime] = {}
    for index, entry in enumerate(entries):
        machine_id, lastseen = _entry(index, entry, now)
        if machine_id in lastseen_by_machine:
            raise PreloadError(f"entry {index}: {machine_id} appears twice in the input")
        lastseen_by_machine[machine_id] = lastseen
    return lastseen_by_machine


def _entry(index: int, entry: Any, now: datetime) -> tuple[str, datetime]:
    if not isinstance(entry, dict):
        raise PreloadError(f"entry {index}: expected an object, got a JSON {_kind(entry)}")
    for name in ("machine", "datacenter", "lastseen"):
        if name not in entry:
            raise PreloadError(f"entry {index}: missing field {name!r}")
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


def preload(store: Store, raw: bytes, now: datetime) -> tuple[int, int]:
    """Validate everything, then write in one transaction; (written, kept because newer)."""
    return store.preload(parse_entries(raw, now))
