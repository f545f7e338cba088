"""Taskcluster's own view of its workers, through the official `taskcluster` client.

worker-manager's `listWorkers` (every page) and `getWorker`, and the queue's
`quarantineWorker`. Every answer is checked; whatever goes wrong -- a refused or failed
request, a timeout, a page that is not JSON, a worker without the fields we need -- is one
TaskclusterError with a one-line message that never holds a credential.

Credentials follow `taskcluster.optionsFromEnvironment()`: TASKCLUSTER_CLIENT_ID,
TASKCLUSTER_ACCESS_TOKEN and, for temporary ones, TASKCLUSTER_CERTIFICATE. They live only in
the client object: never logged, served, or written to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import mohawk
import requests
import taskcluster
from taskcluster import utils as tc_utils

from ..core.identifiers import is_identifier, machine_id, queue_id
from ..core.times import format_lastseen, parse_time

# One request may take this long before it counts as failed: the client itself has no timeout,
# and a poll that hangs would hold its turn forever.
REQUEST_TIMEOUT = 10.0
# Workers per page asked for (worker-manager's own default and maximum).
PAGE_LIMIT = 1000
# A paging that goes on longer than this is a server answering in circles.
MAX_PAGES = 1000
ENVIRON_CREDENTIALS = {"clientId": "TASKCLUSTER_CLIENT_ID", "accessToken": "TASKCLUSTER_ACCESS_TOKEN",
                       "certificate": "TASKCLUSTER_CERTIFICATE"}


class TaskclusterError(Exception):
    """Taskcluster refused, failed, was not reached in time, or answered what we cannot use.

    `status` is the HTTP status when there was one; `code` Taskcluster's error code (e.g.
    InsufficientScopes) when it gave one.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(" ".join(message.split())[:300])
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Credentials:
    """A Taskcluster client id and its secret; the secret never shows in a repr."""

    client_id: str
    access_token: str = field(repr=False)
    certificate: str | None = field(default=None, repr=False)

    def options(self) -> dict[str, str]:
        """The client's `credentials` option."""
        options = {"clientId": self.client_id, "accessToken": self.access_token}
        if self.certificate:
            options["certificate"] = self.certificate
        return options


def credentials_from_environ(environ: Mapping[str, str]) -> Credentials | None:
    """The credentials of TASKCLUSTER_CLIENT_ID / TASKCLUSTER_ACCESS_TOKEN (and
    TASKCLUSTER_CERTIFICATE), or None unless both of the first two are set."""
    values = {name: environ.get(variable) or None for name, variable in ENVIRON_CREDENTIALS.items()}
    if not (values["clientId"] and values["accessToken"]):
        return None
    return Credentials(values["clientId"], values["accessToken"], values["certificate"])


@dataclass(frozen=True)
class Worker:
    """One worker as worker-manager lists it; times naive UTC, None when not given."""

    provisioner_id: str
    worker_type: str
    worker_group: str
    worker_id: str
    first_claim: datetime | None
    last_active: datetime | None
    quarantine_until: datetime | None
    latest_task: tuple[str, int] | None = None
    state: str | None = None

    @property
    def machine_id(self) -> str:
        """The service's id of the machine: `<workerGroup>:<workerId>`."""
        return machine_id(self.worker_group, self.worker_id)

    @property
    def queue(self) -> str:
        """`<provisionerId>/<workerType>`."""
        return queue_id(self.provisioner_id, self.worker_type)

    def quarantined(self, now: datetime) -> bool:
        """True while its quarantine lasts."""
        return self.quarantine_until is not None and self.quarantine_until > now


@dataclass(frozen=True)
class QuarantineDetail:
    """The newest change of a worker's quarantine: until when, why, and by which client."""

    until: datetime | None
    reason: str | None
    by: str | None


def quarantine_scope(provisioner_id: str, worker_type: str, worker_group: str, worker_id: str) -> str:
    """The scope queue.quarantineWorker needs for one worker."""
    return f"queue:quarantine-worker:{queue_id(provisioner_id, worker_type)}/{worker_group}/{worker_id}"


class _BoundedCalls:
    """The client's calls, each one request with a timeout and no retry.

    The synchronous client sends without a timeout and retries five times with backoff: a
    stalled server would hold the poll for ever. The signing (Hawk, with the client's own
    `ext`) and the routes stay the client's.
    """

    timeout: float = REQUEST_TIMEOUT
    session: requests.Session

    def _makeHttpRequest(self, method: str, route: str, payload: Any) -> Any:  # noqa: N802
        self_: Any = self
        url = self_._constructUrl(route)
        body = None if payload is None else tc_utils.dumpJson(payload)
        headers = {"Content-Type": "application/json"} if body else {}
        if self_._hasCredentials():
            credentials = self_.options["credentials"]
            sender = mohawk.Sender(
                credentials={"id": credentials["clientId"], "key": credentials["accessToken"],
                             "algorithm": "sha256"},
                ext=self_.makeHawkExt() or {}, url=url, content=body or "",
                content_type="application/json" if body else "", method=method.upper())
            headers["Authorization"] = sender.request_header
        where = f"{method.upper()} {route.split('?')[0]}"
        try:
            response = self.session.request(method.upper(), url, data=body, headers=headers,
                                            timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise TaskclusterError(f"{where}: no answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise TaskclusterError(f"{where}: cannot reach Taskcluster ({type(exc).__name__})") from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code >= 300:
            code = document.get("code") if isinstance(document, dict) else None
            message = document.get("message", "") if isinstance(document, dict) else ""
            first_line = str(message).strip().splitlines()[0] if message else ""
            raise TaskclusterError(
                f"{where}: HTTP {response.status_code}{f' {code}' if code else ''}"
                f"{f': {first_line}' if first_line else ''}", response.status_code,
                code if isinstance(code, str) else None)
        if not isinstance(document, dict):
            raise TaskclusterError(f"{where}: the answer is not a JSON object")
        return document


class _WorkerManager(_BoundedCalls, taskcluster.WorkerManager):
    pass


class _Queue(_BoundedCalls, taskcluster.Queue):
    pass


class Taskcluster:
    """The worker-manager and queue calls the service makes, their answers checked."""

    def __init__(self, root_url: str, credentials: Credentials | None = None, *,
                 timeout: float = REQUEST_TIMEOUT, page_limit: int = PAGE_LIMIT,
                 max_pages: int = MAX_PAGES) -> None:
        options: dict[str, Any] = {"rootUrl": root_url, "maxRetries": 0}
        if credentials is not None:
            options["credentials"] = credentials.options()
        session = requests.Session()
        self.worker_manager = _WorkerManager(options, session=session)
        self.queue = _Queue(options, session=session)
        for client in (self.worker_manager, self.queue):
            client.timeout = timeout
        self.client_id = credentials.client_id if credentials else None
        self.page_limit = page_limit
        self.max_pages = max_pages

    @property
    def has_credentials(self) -> bool:
        """True when calls are signed."""
        return self.client_id is not None

    def list_workers(self, provisioner_id: str, worker_type: str, *,
                     quarantined: bool | None = None) -> list[Worker]:
        """Every worker of a worker type (or only the quarantined ones, or only the others),
        read page after page until no continuationToken comes back."""
        query: dict[str, str] = {"limit": str(self.page_limit)}
        if quarantined is not None:
            query["quarantined"] = "true" if quarantined else "false"
        workers: list[Worker] = []
        tokens: set[str] = set()
        for _ in range(self.max_pages):
            page = self.worker_manager.listWorkers(provisioner_id, worker_type, query=dict(query))
            listed = page.get("workers")
            if not isinstance(listed, list):
                raise TaskclusterError(f"listWorkers {queue_id(provisioner_id, worker_type)}: a page without "
                                       "a workers list")
            workers.extend(_worker(provisioner_id, worker_type, item) for item in listed)
            token = page.get("continuationToken")
            if token is None:
                return workers
            if not isinstance(token, str) or not token or token in tokens:
                raise TaskclusterError(f"listWorkers {queue_id(provisioner_id, worker_type)}: a bad or "
                                       "repeated continuationToken")
            tokens.add(token)
            query["continuationToken"] = token
        raise TaskclusterError(f"listWorkers {queue_id(provisioner_id, worker_type)}: more than "
                               f"{self.max_pages} pages")

    def quarantine_detail(self, provisioner_id: str, worker_type: str, worker_group: str,
                          worker_id: str) -> QuarantineDetail:
        """The newest of a worker's quarantine changes (worker-manager's getWorker); all None
        when it has none."""
        document = self.worker_manager.getWorker(provisioner_id, worker_type, worker_group, worker_id)
        return _newest_detail(document, f"getWorker {worker_group}/{worker_id}")

    def quarantine(self, provisioner_id: str, worker_type: str, worker_group: str, worker_id: str,
                   until: datetime, reason: str | None = None) -> datetime | None:
        """Quarantine a worker until `until` (a time in the past lifts it); the worker's
        quarantineUntil as the queue now has it."""
        payload: dict[str, str] = {"quarantineUntil": _tc_time(until)}
        if reason:
            payload["quarantineInfo"] = reason
        document = self.queue.quarantineWorker(provisioner_id, worker_type, worker_group, worker_id,
                                               payload)
        return _optional_time(document, "quarantineUntil", f"quarantineWorker {worker_group}/{worker_id}")


def _tc_time(moment: datetime) -> str:
    # Taskcluster's form: ISO 8601 in UTC with milliseconds and Z
    return format_lastseen(moment)[:23] + "Z"


def _optional_time(document: Mapping[str, Any], name: str, where: str) -> datetime | None:
    value = document.get(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise TaskclusterError(f"{where}: {name} is not a time") from None


def _worker(provisioner_id: str, worker_type: str, item: Any) -> Worker:
    if not isinstance(item, dict):
        raise TaskclusterError(f"listWorkers {queue_id(provisioner_id, worker_type)}: "
                               "a worker is not an object")
    group, worker_id = item.get("workerGroup"), item.get("workerId")
    if not (is_identifier(group) and is_identifier(worker_id)):
        raise TaskclusterError(f"listWorkers {queue_id(provisioner_id, worker_type)}: a worker without a "
                               "valid workerGroup and workerId")
    where = f"listWorkers worker {group}/{worker_id}"
    latest = item.get("latestTask")
    latest_task = None
    if isinstance(latest, dict) and isinstance(latest.get("taskId"), str) \
            and isinstance(latest.get("runId"), int):
        latest_task = (latest["taskId"], latest["runId"])
    state = item.get("state")
    return Worker(provisioner_id, worker_type, group, worker_id,
                  _optional_time(item, "firstClaim", where), _optional_time(item, "lastDateActive", where),
                  _optional_time(item, "quarantineUntil", where), latest_task,
                  state if isinstance(state, str) else None)


def _newest_detail(document: Mapping[str, Any], where: str) -> QuarantineDetail:
    details = document.get("quarantineDetails") or []
    if not isinstance(details, list) or not all(isinstance(entry, dict) for entry in details):
        raise TaskclusterError(f"{where}: quarantineDetails is not a list of objects")
    until = _optional_time(document, "quarantineUntil", where)
    if not details:
        return QuarantineDetail(until, None, None)
    # the list is in the order of the changes; updatedAt says so too, and wins when given
    newest = max(enumerate(details), key=lambda pair: (str(pair[1].get("updatedAt", "")), pair[0]))[1]
    reason, by = newest.get("quarantineInfo"), newest.get("clientId")
    return QuarantineDetail(until, reason if isinstance(reason, str) and reason else None,
                            by if isinstance(by, str) and by else None)

