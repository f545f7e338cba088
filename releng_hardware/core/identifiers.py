"""Taskcluster's identifier rule, the service's machine id (`<datacenter>:<hostname>`), and the
names built of identifiers: a queue (`<provisioner>/<workerType>`) and a task's link."""

from __future__ import annotations

import re
from typing import TypeGuard

# The queue's schemas allow 1 to 38 of these characters in workerGroup, workerId,
# provisionerId and workerType.
IDENTIFIER = r"[A-Za-z0-9_-]{1,38}"
# A machine is named by its datacenter and hostname; a bare hostname may stand for it.
MACHINE_REF = rf"(?:{IDENTIFIER}:)?{IDENTIFIER}"
MAX_MACHINE_REF = 2 * 38 + 1

_IDENTIFIER = re.compile(IDENTIFIER)
_MACHINE_REF = re.compile(MACHINE_REF)


def is_identifier(value: object) -> TypeGuard[str]:
    """True for a string Taskcluster accepts as an identifier."""
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def is_machine_ref(value: str) -> bool:
    """True for `<datacenter>:<hostname>` or a bare hostname."""
    return _MACHINE_REF.fullmatch(value) is not None


# What joins a machine's datacenter and hostname into its id.
MACHINE_ID_SEPARATOR = ":"


def machine_id(datacenter: str, hostname: str) -> str:
    """The id a machine has everywhere: `$DC:$HOSTNAME`."""
    return f"{datacenter}{MACHINE_ID_SEPARATOR}{hostname}"


def split_machine_id(value: str) -> tuple[str, str]:
    """(datacenter, hostname) of a machine id."""
    datacenter, _, hostname = value.rpartition(MACHINE_ID_SEPARATOR)
    return datacenter, hostname


def queue_id(provisioner: str | None, worker_type: str | None) -> str:
    """A worker type's queue as Taskcluster names it: `<provisioner>/<workerType>`.

    A missing part is written as Python formats it ("None"), as the stored records and the
    pending counts have always been matched; the queue names of Taskcluster are never that.
    """
    return f"{provisioner}/{worker_type}"


def task_url(root_url: str, task_id: str, run_id: int | None = None) -> str:
    """A task's page in the Taskcluster deployment at `root_url`, or one of its runs'."""
    task = f"{root_url}/tasks/{task_id}"
    return task if run_id is None else f"{task}/runs/{run_id}"
