"""Every Redis key name of the service, and the parts of a key or a member both Python and the
scripts build: the one place a key name is spelt (docs/architecture.md, "Redis layout").

The Lua scripts get these as constants of their prelude (store.scripts), never as literals of
their own; tests/unit/test_lua_definitions.py fails on a script that spells one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from ..core.identifiers import split_machine_id
from ..core.times import LASTSEEN_FORMAT, LASTSEEN_LENGTH, epoch_microseconds

# The keys of one name each, under the prefix: attribute name -> the key's name.
NAMES: dict[str, str] = {name: name for name in (
    "machines", "machine_records", "machine_history", "listener", "pending_queues", "version",
    "inventory", "retention_cursor", "machine_order", "machine_order_state", "quarantine",
    "taskcluster", "taskcluster_turn", "labels")}
# The machine index's keys (lua/machine_index.lua): attribute name -> the key's name.
INDEX_NAMES: dict[str, str] = {f"index_{name}": f"index:{name}" for name in (
    "groups", "attention", "judged", "counts", "generation", "unjudged", "state", "views")}
# The keys of one name per thing: their name without the thing (label ref, queue, machine id, group).
FAMILIES: dict[str, str] = {
    "label": "label:",  # label:<ref>, peers.decode_label reads its value
    "pending": "pending:",  # pending:<provisioner>/<workerType>
    "claimed": "claimed:",  # claimed:<provisioner>/<workerType>
    # left by the version before the history: remove with its readers once no Redis holds a
    # machine not written since that version (one RETENTION period after every deployment ran it)
    "legacy_runs": "runs:",
    "index_seen": "index:seen:",  # index:seen:<group>
    "index_running": "index:running:",  # index:running:<group>
}

# What joins a group's parts ("<datacenter>\t<provisioner>\t<worker type>"): in no identifier.
GROUP_SEPARATOR = "\t"
# What joins the parts of a machine order member: sorts before every character of a name.
ORDER_SEPARATOR = "\0"


class Keys:
    """The key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.machines, self.machine_records, self.machine_history = (
            prefix + NAMES[name] for name in ("machines", "machine_records", "machine_history"))
        self.listener, self.pending_queues, self.version, self.inventory = (
            prefix + NAMES[name] for name in ("listener", "pending_queues", "version", "inventory"))
        self.retention_cursor, self.machine_order, self.machine_order_state = (
            prefix + NAMES[name] for name in ("retention_cursor", "machine_order",
                                              "machine_order_state"))
        self.quarantine, self.taskcluster, self.taskcluster_turn, self.labels = (
            prefix + NAMES[name] for name in ("quarantine", "taskcluster", "taskcluster_turn",
                                              "labels"))
        self.index_state, self.index_unjudged, self.index_judged, self.index_views = (
            prefix + INDEX_NAMES[name] for name in ("index_state", "index_unjudged",
                                                    "index_judged", "index_views"))

    def label(self, ref: str) -> str:
        """The key of one label's runs."""
        return self.prefix + FAMILIES["label"] + ref

    def pending(self, queue: str) -> str:
        """The tasks waiting of one `<provisioner>/<workerType>`."""
        return self.prefix + FAMILIES["pending"] + queue

    def legacy_runs(self, machine_id: str) -> str:
        """A machine's run set of the version before the history."""
        return self.prefix + FAMILIES["legacy_runs"] + machine_id


def lua_key_names() -> dict[str, str]:
    """Every key name and family as the scripts' prelude has them (table KEY)."""
    return {**NAMES, **INDEX_NAMES, **FAMILIES}


def group_key(machine_id: str, details: Mapping[str, Any] | None) -> str:
    """The group of a machine (lua/machine_index.lua's rule): its datacenter, provisioner and
    worker type; a machine without a record (None) has neither."""
    datacenter, _ = split_machine_id(machine_id)
    if details is None:
        return GROUP_SEPARATOR.join((datacenter, "", ""))
    return GROUP_SEPARATOR.join((datacenter, _text(details.get("provisioner")),
                                 _text(details.get("worker_type"))))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def order_member(machine_id: str) -> str:
    """The machine's member of the machine order (lua/machine_order.lua's rule): its hostname,
    datacenter and id, so members sort as fleet.sort_by_hostname orders machines."""
    datacenter, hostname = split_machine_id(machine_id)
    return ORDER_SEPARATOR.join((hostname, datacenter, machine_id))


def order_member_id(member: str) -> str:
    """The machine id of a machine order member."""
    return member.split(ORDER_SEPARATOR, 2)[2]


def score(moment: datetime) -> int:
    """A time as the index orders machines by it: epoch microseconds (lua/machine_index.lua's
    lastseen_score of its lastseen)."""
    return epoch_microseconds(moment)


def lastseen_score(text: str | None) -> int:
    """A lastseen-format time as the index orders machines by it (lua/machine_index.lua's
    lastseen_score): epoch microseconds; 0 when unreadable."""
    if not text or len(text) != LASTSEEN_LENGTH:
        return 0
    try:
        return score(datetime.strptime(text, LASTSEEN_FORMAT))
    except ValueError:
        return 0
