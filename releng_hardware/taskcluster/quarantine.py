"""Quarantining and lifting machines from the command line.

Choosing the machines and the safety limit are pure functions of the fleet as /machines shows
it; `quarantine_machines` does the calls. The click commands are in cli.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..views.fleet import MachineQuery, select
from ..core.identifiers import MACHINE_ID_SEPARATOR, queue_id
from ..core.records import Quarantine
from ..store.machines import Store
from ..core.times import format_lastseen
from .client import Taskcluster, TaskclusterError, quarantine_scope

# One call may change at most this share of a pool (a worker type) without --force; one machine
# of a pool is always allowed, or a small pool could never have one quarantined.
MAX_POOL_SHARE = Fraction(1, 10)


@dataclass(frozen=True)
class Target:
    """A machine to quarantine or lift, with the names Taskcluster knows it by."""

    machine_id: str
    provisioner: str
    worker_type: str
    worker_group: str
    worker_id: str

    @property
    def scope(self) -> str:
        """The scope quarantining it needs."""
        return quarantine_scope(self.provisioner, self.worker_type, self.worker_group, self.worker_id)


def choose(machines: Sequence[Mapping[str, Any]], refs: Sequence[str], query: MachineQuery | None
           ) -> tuple[list[Target], list[str]]:
    """The machines named by `refs` (`<dc>:<host>` or a hostname) that also match `query` (all
    of them when None), or those matching `query` when no ref is given; and one line for each
    ref that names no machine or a machine whose worker type is not known."""
    by_id = {machine["id"]: machine for machine in machines}
    problems: list[str] = []
    chosen: list[Mapping[str, Any]] = []
    if refs:
        for ref in refs:
            found = ([by_id[ref]] if ref in by_id else [] if MACHINE_ID_SEPARATOR in ref
                     else [machine for machine in machines if machine["machine"] == ref])
            if not found:
                problems.append(f"{ref}: no such machine")
            chosen.extend(found)
        if query is not None:
            matching = {machine["id"] for machine in select(list(chosen), query)}
            chosen = [machine for machine in chosen if machine["id"] in matching]
    elif query is not None:
        chosen = select(list(machines), query)
    targets: list[Target] = []
    for machine in {machine["id"]: machine for machine in chosen}.values():
        if not (machine.get("provisioner") and machine.get("worker_type")):
            problems.append(f"{machine['id']}: its provisioner and worker type are not known yet")
            continue
        targets.append(Target(machine["id"], machine["provisioner"], machine["worker_type"],
                              machine["datacenter"], machine["machine"]))
    return targets, problems


def over_the_limit(targets: Sequence[Target], machines: Iterable[Mapping[str, Any]],
                   limit: int) -> str | None:
    """Why changing `targets` at once needs --force, or None: more than `limit` machines, or
    more than a tenth of a pool (counted in the fleet)."""
    if len(targets) > limit:
        return f"{len(targets)} machines is more than QUARANTINE_MAX ({limit})"
    pools: dict[str, int] = {}
    for machine in machines:
        if machine.get("worker_type"):
            pools[machine["worker_type"]] = pools.get(machine["worker_type"], 0) + 1
    chosen: dict[str, int] = {}
    for target in targets:
        chosen[target.worker_type] = chosen.get(target.worker_type, 0) + 1
    for worker_type, count in sorted(chosen.items()):
        size = pools.get(worker_type, count)
        if count > max(Fraction(1), size * MAX_POOL_SHARE):
            return f"{count} of the {size} machines of {worker_type} is more than a tenth of the pool"
    return None


def quarantine_machines(store: Store, taskcluster: Taskcluster, targets: Sequence[Target], *,
                        until: datetime, reason: str | None, now: datetime,
                        echo: Callable[[str], None]) -> int:
    """Quarantine each target until `until` (lift: `until` not after `now`), recording each
    result in the store at once; one line per machine; the number that failed.

    A refusal for want of scopes stops there: the next ones would be refused the same way.
    """
    lifting = until <= now
    failed = 0
    for index, target in enumerate(targets):
        try:
            ends = taskcluster.quarantine(target.provisioner, target.worker_type, target.worker_group,
                                          target.worker_id, until, reason)
        except TaskclusterError as exc:
            failed += 1
            if exc.status == 403:
                echo(f"{target.machine_id}: refused: the credentials lack scope {target.scope}")
                skipped = len(targets) - index - 1
                if skipped:
                    echo(f"{skipped} more machines not tried")
                return failed + skipped
            echo(f"{target.machine_id}: failed: {exc}")
            continue
        if lifting or ends is None or ends <= now:
            store.set_quarantine(target.machine_id, None)
            echo(f"{target.machine_id}: lifted")
        else:
            store.set_quarantine(target.machine_id, Quarantine(
                format_lastseen(ends), reason, taskcluster.client_id,
                queue_id(target.provisioner, target.worker_type)))
            echo(f"{target.machine_id}: quarantined until {format_lastseen(ends)}")
    return failed
