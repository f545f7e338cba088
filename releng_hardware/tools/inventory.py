"""The expected inventory: the machines that should exist, loaded from JSON, CSV or plain lines.

Pure: parsing, validation, the load rules and the JSON the inventory is shown as. The commands
`releng-hardware-inventory load|show` (also `releng-hardware inventory` and
`python -m releng_hardware.cli inventory`) are in cli.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping

import orjson

from ..core.identifiers import is_identifier, machine_id, split_machine_id
from .preload import machine_objects

# A replace removing more than this share of the inventory is more likely a cut-off pipe
# or the wrong file than a real decommissioning; --force says it is meant.
MAX_REMOVED_SHARE = Fraction(1, 10)
FIELDS = ("datacenter", "machine", "worker_type")
LINE_FORM = "'datacenter:hostname [worker_type]'"
FORMATS = f"a JSON array, CSV with a header naming datacenter and machine, or {LINE_FORM} lines"


class InventoryError(ValueError):
    """The input cannot be loaded; the message names the entry or line at fault."""


@dataclass(frozen=True)
class InventoryChange:
    """What a load does: the inventory after it, and how it differs from the one before."""

    after: Mapping[str, str | None]
    added: int
    removed: int
    unchanged: int
    changed_worker_type: int

    def summary(self) -> str:
        """The one line a load prints."""
        return (f"{len(self.after)} machines in the inventory after the load: {self.added} added, "
                f"{self.removed} removed, {self.unchanged} unchanged, "
                f"{self.changed_worker_type} changed worker type")


def parse_inventory(raw: bytes) -> dict[str, str | None]:
    """Machine id -> worker type (None when not given) from any of the three formats.

    InventoryError names the first bad entry or line; input without any entry is refused,
    except an explicit JSON `[]`, the one way to say "no machines".
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"input is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InventoryError("input is empty: only an explicit JSON [] empties the inventory")
    if text.lstrip()[0] in "[{":
        return _from_json(text)
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InventoryError("input has only blank lines and comments: "
                             "only an explicit JSON [] empties the inventory")
    first_number, first_line = lines[0]
    first_words = first_line.split("#", 1)[0]  # a comment may say anything, commas included
    if "," in first_words:
        inventory = _from_csv(text)
    elif ":" in first_words.split(None, 1)[0]:
        inventory = _from_lines(lines)
    else:
        raise InventoryError(f"line {first_number}: unknown format {_show(first_line)}: "
                             f"expected {FORMATS}")
    if not inventory:
        raise InventoryError("input has no entries: only an explicit JSON [] empties the inventory")
    return inventory


def _from_json(text: str) -> dict[str, str | None]:
    inventory: dict[str, str | None] = {}
    places: dict[str, str] = {}
    for index, entry in machine_objects(text, ("datacenter", "machine"), InventoryError):
        _add(inventory, places, f"entry {index}", entry["datacenter"], entry["machine"],
             entry.get("worker_type"))
    return inventory


def _from_csv(text: str) -> dict[str, str | None]:
    rows = _csv_rows(text)
    header_line, header = next(rows)
    columns = [name.strip().lower() for name in header]
    for name in ("datacenter", "machine"):
        if name not in columns:
            raise InventoryError(f"line {header_line}: the CSV header names no {name!r} column "
                                 f"(expected {FORMATS})")
    repeated = sorted({name for name in columns if name in FIELDS and columns.count(name) > 1})
    if repeated:
        raise InventoryError(f"line {header_line}: the CSV header names {repeated[0]!r} twice")
    position = {name: columns.index(name) for name in FIELDS if name in columns}
    inventory: dict[str, str | None] = {}
    places: dict[str, str] = {}
    for number, row in rows:
        if len(row) != len(columns):
            raise InventoryError(f"line {number}: {len(row)} fields, the header has {len(columns)}")
        cells = {name: row[index].strip() for name, index in position.items()}
        _add(inventory, places, f"line {number}", cells["datacenter"], cells["machine"],
             cells.get("worker_type") or None)
    return inventory


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every row but blank and # comment lines."""
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for row in reader:
            if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
                yield reader.line_num, row
    except csv.Error as exc:
        raise InventoryError(f"line {reader.line_num}: not valid CSV: {exc}") from None


def _from_lines(lines: list[tuple[int, str]]) -> dict[str, str | None]:
    inventory: dict[str, str | None] = {}
    places: dict[str, str] = {}
    for number, line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) not in (1, 2) or ":" not in words[0]:
            raise InventoryError(f"line {number}: expected {LINE_FORM}, got {_show(line.strip())}")
        datacenter, _, hostname = words[0].partition(":")
        _add(inventory, places, f"line {number}", datacenter, hostname,
             words[1] if len(words) == 2 else None)
    return inventory


def _add(inventory: dict[str, str | None], places: dict[str, str], place: str,
         datacenter: Any, hostname: Any, worker_type: Any) -> None:
    """Validate one entry and add it; the same machine twice must agree on its worker type."""
    for name, value in (("datacenter", datacenter), ("machine", hostname)):
        if not is_identifier(value):
            raise InventoryError(f"{place}: {name} {_show(value)} is not a Taskcluster identifier "
                                 "(1 to 38 letters, digits, - and _)")
    if worker_type is not None and not is_identifier(worker_type):
        raise InventoryError(f"{place}: worker_type {_show(worker_type)} is not a Taskcluster "
                             "identifier (1 to 38 letters, digits, - and _)")
    key = machine_id(datacenter, hostname)
    if key in inventory and inventory[key] != worker_type:
        raise InventoryError(f"{place}: {key} is already in the input ({places[key]}) with worker "
                             f"type {inventory[key]!r}, here {worker_type!r}")
    inventory[key] = worker_type
    places.setdefault(key, place)


def _show(value: Any) -> str:
    """A value from the input, quoted, escaped and short enough to keep the message one line."""
    text = repr(value) if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def plan_load(current: Mapping[str, str | None], loaded: Mapping[str, str | None], *,
              merge: bool, force: bool) -> InventoryChange:
    """What loading `loaded` over `current` gives; InventoryError if a replace removes too much."""
    after = {**current, **loaded} if merge else dict(loaded)
    removed = sum(1 for key in current if key not in after)
    if removed > len(current) * MAX_REMOVED_SHARE and not force:
        raise InventoryError(
            f"this would remove {removed} of the {len(current)} machines in the "
            "inventory (more than a tenth); check the input, or pass --force if it is meant")
    kept = [key for key in after if key in current]
    changed = sum(1 for key in kept if current[key] != after[key])
    return InventoryChange(after=after, added=len(after) - len(kept), removed=removed,
                           unchanged=len(kept) - changed, changed_worker_type=changed)


def inventory_json(inventory: Mapping[str, str | None]) -> bytes:
    """The inventory as a JSON array in the /machines shape, one machine per line, sorted by id."""
    rows = []
    for key in sorted(inventory):
        datacenter, hostname = split_machine_id(key)
        rows.append(orjson.dumps({"id": key, "machine": hostname, "datacenter": datacenter,
                                  "worker_type": inventory[key]}).decode())
    return ("[\n  " + ",\n  ".join(rows) + "\n]\n" if rows else "[]\n").encode()

