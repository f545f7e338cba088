"""The listener's Taskcluster poll: every TASKCLUSTER_POLL, the quarantined workers of every
followed worker type, into the store.

It runs on a thread of its own beside the consume loop, so a slow or failing Taskcluster never
holds a message; a failure is one log line and a counter, and the last good state stays. Several
listeners take turns: each round, whoever takes the store's turn key polls, the others skip.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

import redis

from ..core.config import Config
from ..core.identifiers import queue_id
from ..core.records import MachineRecord, Quarantine
from ..store.machines import Store
from ..core.times import format_lastseen, utcnow
from .client import Taskcluster, TaskclusterError

log = logging.getLogger(__name__)

# The turn lasts a little less than a round, so the listener that polled can take the next one.
TURN_SHARE = 0.9


def followed_queues(records: Iterable[MachineRecord], inventory: Mapping[str, str | None],
                    provisioner_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(provisionerId, workerType) of every worker type seen for a followed provisioner, and of
    every worker type the inventory lists, for each followed provisioner."""
    queues = {(record.details.get("provisioner"), record.details.get("worker_type"))
              for record in records}
    followed = {(provisioner, worker_type) for provisioner, worker_type in queues
                if provisioner in provisioner_ids and worker_type}
    followed.update((provisioner, worker_type) for worker_type in set(inventory.values())
                    if worker_type for provisioner in provisioner_ids)
    return sorted(followed)  # type: ignore[arg-type]


def read_quarantines(taskcluster: Taskcluster, provisioner_id: str, worker_type: str, now: datetime,
                     known: Mapping[str, Quarantine]) -> dict[str, Quarantine]:
    """Machine id -> quarantine of one worker type's quarantined workers, every page read.

    The reason and who set it come from getWorker, asked only for a quarantine not known
    already with the same end.
    """
    queue = queue_id(provisioner_id, worker_type)
    found = {}
    for worker in taskcluster.list_workers(provisioner_id, worker_type, quarantined=True):
        if not worker.quarantined(now) or worker.quarantine_until is None:
            continue
        until = format_lastseen(worker.quarantine_until)
        previous = known.get(worker.machine_id)
        if previous is not None and previous.until == until and previous.queue == queue:
            found[worker.machine_id] = previous
            continue
        detail = taskcluster.quarantine_detail(provisioner_id, worker_type, worker.worker_group,
                                               worker.worker_id)
        found[worker.machine_id] = Quarantine(until, detail.reason, detail.by, queue)
    return found


def poll_once(store: Store, taskcluster: Taskcluster, config: Config, now: datetime) -> str | None:
    """One complete poll: each followed worker type's quarantines replace its stored ones once all
    its pages are read. None when every worker type was read, else the first error line."""
    known = store.quarantines()
    queues = followed_queues(store.machines(), store.inventory(), config.provisioner_ids)
    errors = []
    for provisioner_id, worker_type in queues:
        try:
            quarantines = read_quarantines(taskcluster, provisioner_id, worker_type, now, known)
        except TaskclusterError as exc:
            errors.append(str(exc))
            continue  # this worker type keeps its last good state
        store.replace_quarantines(queue_id(provisioner_id, worker_type), quarantines)
    error = None
    if errors:
        error = errors[0] + (f" (and {len(errors) - 1} more worker types failed)" if len(errors) > 1 else "")
    store.taskcluster_polled(now, error)
    return error


class TaskclusterPoller:
    """A daemon thread polling every `config.taskcluster_poll` seconds, taking turns with the
    other listeners."""

    def __init__(self, store: Store, taskcluster: Taskcluster, config: Config, *,
                 clock: Callable[[], datetime] = utcnow, holder: str | None = None) -> None:
        self.store = store
        self.taskcluster = taskcluster
        self.config = config
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Poll when it is this listener's turn; True when it polled. Never raises."""
        try:
            if not self.store.take_taskcluster_turn(self.holder, self.config.taskcluster_poll * TURN_SHARE):
                return False
            error = poll_once(self.store, self.taskcluster, self.config, self.clock())
        except redis.RedisError as exc:
            log.warning("Taskcluster poll skipped: Redis failed (%s)", type(exc).__name__)
            return False
        except Exception as exc:  # a surprise here must not end the thread
            log.warning("Taskcluster poll failed unexpectedly: %s", type(exc).__name__)
            return False
        if error is not None:
            log.warning("Taskcluster poll failed; the last good state stays: %s", error)
        return True

    def start(self) -> "TaskclusterPoller":
        """Start polling on a daemon thread (the first poll at once)."""
        self._thread = threading.Thread(target=self._run, name="taskcluster-poll", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_once()
            self._stopping.wait(self.config.taskcluster_poll)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the current poll; waits at most `timeout` for it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)


def start_poller(config: Config, store: Store, taskcluster: Taskcluster | None) -> TaskclusterPoller | None:
    """The running poller, or None when TASKCLUSTER_POLL is 0 or there is no client."""
    if not config.taskcluster_poll or taskcluster is None:
        return None
    log.info("polling Taskcluster at %s every %gs for quarantined workers",
             config.taskcluster_root_url, config.taskcluster_poll)
    return TaskclusterPoller(store, taskcluster, config).start()
