"""The store's quarantines and the Taskcluster poll: what Taskcluster (or the CLI) says of a
machine's quarantine, whose turn it is to poll, and how the polls went."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Mapping

import orjson
from redis.commands.core import Script

from .base import StorePart
from .scripts import script
from ..core.records import Quarantine
from ..core.times import format_lastseen

TASKCLUSTER_COUNTERS = ("consecutive_failures", "polls", "failures")
_REPLACE_QUARANTINES = script("replace_quarantines")


def lasting_quarantines(stored: Mapping[str, str], cutoff: str | None) -> dict[str, Quarantine]:
    """Machine id -> its quarantine, of the stored ones lasting past `cutoff` (None: any)."""
    found = {}
    for machine_id, raw in stored.items():
        quarantine = lasting_quarantine(raw, cutoff)
        if quarantine is not None:
            found[machine_id] = quarantine
    return found


def lasting_quarantine(raw: str | None, cutoff: str | None) -> Quarantine | None:
    """A stored quarantine, when there is one lasting past `cutoff` (a lastseen; None: any)."""
    if raw is None:
        return None
    value = orjson.loads(raw)
    quarantine = Quarantine(value["until"], value.get("reason"), value.get("by"),
                            value.get("queue", ""))
    return quarantine if cutoff is None or quarantine.until > cutoff else None


def _quarantine_value(quarantine: Quarantine) -> str:
    # sorted keys: the script compares stored and new values as strings
    return orjson.dumps({"until": quarantine.until, "reason": quarantine.reason, "by": quarantine.by,
                         "queue": quarantine.queue}, option=orjson.OPT_SORT_KEYS).decode()


class QuarantinesPart(StorePart):
    """Quarantines, the turn to poll Taskcluster and the poll's status."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {"_replace_quarantines": _REPLACE_QUARANTINES}
    _replace_quarantines: Script

    def replace_quarantines(self, queue: str, quarantines: Mapping[str, Quarantine]) -> int:
        """Make `quarantines` (machine id -> its quarantine) the whole set of `queue`'s, at once:
        a machine of that queue not in it is no longer quarantined. The entries changed."""
        wanted = {machine_id: _quarantine_value(quarantine._replace(queue=queue))
                  for machine_id, quarantine in quarantines.items()}
        return int(self._replace_quarantines(keys=[self.keys.quarantine, self.keys.version],
                                             args=[queue, orjson.dumps(wanted)]))

    def set_quarantine(self, machine_id: str, quarantine: Quarantine | None) -> None:
        """Record one machine's quarantine (None: lifted) at once, as the CLI just set it."""
        pipe = self.redis.pipeline(transaction=True)
        if quarantine is None:
            pipe.hdel(self.keys.quarantine, machine_id)
        else:
            pipe.hset(self.keys.quarantine, machine_id, _quarantine_value(quarantine))
        pipe.incr(self.keys.version)
        pipe.execute()

    def quarantines(self, now: datetime | None = None) -> dict[str, Quarantine]:
        """Machine id -> its quarantine as last read from Taskcluster (or set by the CLI);
        given `now`, only those lasting past it."""
        stored: dict[str, str] = self.redis.hgetall(self.keys.quarantine)  # type: ignore[assignment]
        return lasting_quarantines(stored, None if now is None else format_lastseen(now))

    def take_taskcluster_turn(self, holder: str, seconds: float) -> bool:
        """True when this holder may poll Taskcluster now: nobody polled in the last `seconds`."""
        return bool(self.redis.set(self.keys.taskcluster_turn, holder, nx=True,
                                   px=max(1, int(seconds * 1000))))

    def taskcluster_polled(self, now: datetime, error: str | None = None) -> None:
        """Note one poll of Taskcluster: complete and good (error None), or failed with `error`
        (one line, no credential)."""
        at = format_lastseen(now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self.keys.taskcluster, "polls", 1)
        if error is None:
            pipe.hset(self.keys.taskcluster, mapping={"last_good_poll_at": at, "last_poll_at": at,
                                                     "consecutive_failures": 0})
        else:
            pipe.hincrby(self.keys.taskcluster, "failures", 1)
            pipe.hincrby(self.keys.taskcluster, "consecutive_failures", 1)
            pipe.hset(self.keys.taskcluster, mapping={"last_poll_at": at, "last_error": error[:300],
                                                     "last_error_at": at})
        pipe.execute()

    # Any: the web's readers take the mix of str, None and int as they always have
    def taskcluster_status(self) -> dict[str, Any]:
        """The poll's status: last_good_poll_at, last_poll_at, last_error, last_error_at (str or
        None) and the counters consecutive_failures, polls, failures (int)."""
        stored: dict[str, str] = self.redis.hgetall(self.keys.taskcluster)  # type: ignore[assignment]
        status: dict[str, Any] = {name: stored.get(name) for name in (
            "last_good_poll_at", "last_poll_at", "last_error", "last_error_at")}
        status.update((name, int(stored.get(name) or 0)) for name in TASKCLUSTER_COUNTERS)
        return status
