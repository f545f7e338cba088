"""A local stand-in for the Taskcluster routes the service calls, for tests and `scripts/run`.

    fake_tc = FakeTaskcluster(credentials={"ops": ("secret", ["queue:quarantine-worker:*"])})
    fake_tc.start()            # 127.0.0.1, a free port; fake_tc.root_url
    fake_tc.add_worker("releng-hardware", "gecko-t-linux-talos", "mdc1", "t-linux64-ms-001", ...)

It answers worker-manager's listWorkers (paged with continuationToken) and getWorker, and the
queue's quarantineWorker (PUT, which changes its state and notes clientId and reason in
`quarantineDetails`), with documents shaped as Taskcluster's published schemas say. Given
credentials, it checks each request's Hawk `Authorization` header (the client's signature) and
the quarantine scope; unsigned reads are allowed, as on a deployment with public reads.
`fault` makes it fail ("error": HTTP 500), stall ("stall": no answer for `stall_seconds`),
answer garbage ("garbage": not JSON), or list a worker without its workerId ("malformed").
Nothing here reaches outside 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import mohawk
import mohawk.exc

from ..core.identifiers import queue_id
from ..core.times import format_lastseen, parse_time, utcnow

FAULTS = ("error", "stall", "garbage", "malformed")
_WORKERS = re.compile(r"^/api/worker-manager/v1/provisioners/([^/]+)/worker-types/([^/]+)/workers$")
_WORKER = re.compile(
    r"^/api/(worker-manager|queue)/v1/provisioners/([^/]+)/worker-types/([^/]+)/workers/([^/]+)/([^/]+)$")


def tc_time(moment: datetime) -> str:
    """Taskcluster's time form: UTC, milliseconds, Z."""
    return format_lastseen(moment)[:23] + "Z"


@dataclass
class FakeWorker:
    """One worker the stand-in knows."""

    provisioner_id: str
    worker_type: str
    worker_group: str
    worker_id: str
    first_claim: datetime
    last_active: datetime | None = None
    quarantine_until: datetime | None = None
    latest_task: tuple[str, int] | None = None
    quarantine_details: list[dict[str, str]] = field(default_factory=list)


class FakeTaskcluster:
    """Taskcluster's worker routes on 127.0.0.1, with faults on demand."""

    def __init__(self, *, credentials: dict[str, tuple[str, list[str]]] | None = None,
                 clock: Callable[[], datetime] = utcnow, stall_seconds: float = 5.0) -> None:
        # client id -> (access token, scopes)
        self.credentials = credentials
        self.clock = clock
        self.stall_seconds = stall_seconds
        self.fault: str | None = None
        self.workers: dict[tuple[str, str, str, str], FakeWorker] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._nonces: set[tuple[str, str, str]] = set()

    # -- state --------------------------------------------------------------

    def add_worker(self, provisioner_id: str, worker_type: str, worker_group: str, worker_id: str, *,
                   first_claim: datetime, last_active: datetime | None = None,
                   quarantine_until: datetime | None = None, reason: str | None = None,
                   by: str = "standin-seed", latest_task: tuple[str, int] | None = None) -> FakeWorker:
        """Add (or replace) a worker; a quarantine given here is noted as by `by`."""
        worker = FakeWorker(provisioner_id, worker_type, worker_group, worker_id, first_claim,
                               last_active, quarantine_until, latest_task)
        if quarantine_until is not None:
            worker.quarantine_details.append(self._detail(by, quarantine_until, reason))
        with self._lock:
            self.workers[(provisioner_id, worker_type, worker_group, worker_id)] = worker
        return worker

    def _detail(self, client_id: str, until: datetime, reason: str | None) -> dict[str, str]:
        return {"clientId": client_id, "quarantineUntil": tc_time(until),
                "updatedAt": tc_time(self.clock()), "quarantineInfo": reason or ""}

    # -- serving ------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The rootUrl to give the client."""
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"  # type: ignore[str-bytes-safe]  # AF_INET: a str host

    def start(self, port: int = 0) -> "FakeTaskcluster":
        """Serve on 127.0.0.1:`port` (0: a free one) in a background thread."""
        fake_tc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake_tc._handle(self, "GET")

            def do_PUT(self) -> None:  # noqa: N802
                fake_tc._handle(self, "PUT")

            def log_message(self, *args: Any) -> None:
                pass  # the requests are in fake_tc.requests; stderr stays quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tc-standin",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled answers end at once."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FakeTaskcluster":
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        authorization = handler.headers.get("Authorization")
        with self._lock:
            self.requests.append((method, parts.path, authorization))
        fault = self.fault
        if fault == "stall":
            self._closing.wait(self.stall_seconds)
        if fault == "error":
            return _send(handler, 500, {"code": "InternalServerError", "message": "stand-in fault"})
        if fault == "garbage":
            return _send_raw(handler, 200, b"<html>not json</html>", "text/html")
        client_id, problem = self._authenticate(handler, method, body)
        if problem:
            return _send(handler, 401, {"code": "AuthenticationFailed", "message": problem})
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        if method == "GET" and (match := _WORKERS.match(parts.path)):
            return _send(handler, 200, self._list(match.group(1), match.group(2), query, fault))
        match = _WORKER.match(parts.path)
        if match is None:
            return _send(handler, 404, {"code": "ResourceNotFound", "message": "no such route"})
        service, key = match.group(1), match.groups()[1:]
        if method == "GET" and service == "worker-manager":
            worker = self.workers.get(key)  # type: ignore[arg-type]
            if worker is None:
                return _send(handler, 404, {"code": "ResourceNotFound", "message": "no such worker"})
            return _send(handler, 200, self._worker_response(worker))
        if method == "PUT" and service == "queue":
            return self._quarantine(handler, key, client_id, body)
        return _send(handler, 404, {"code": "ResourceNotFound", "message": "no such route"})

    def _authenticate(self, handler: BaseHTTPRequestHandler, method: str,
                      body: bytes) -> tuple[str | None, str | None]:
        """(client id, None) for a good signature, (None, None) for an unsigned request,
        (None, problem) for a bad one."""
        header = handler.headers.get("Authorization")
        if header is None or self.credentials is None:
            return None, None
        known = {client: {"id": client, "key": token, "algorithm": "sha256"}
                 for client, (token, _) in self.credentials.items()}
        try:
            receiver = mohawk.Receiver(
                lambda client: known[client], header,
                f"http://{handler.headers.get('Host')}{handler.path}", method,
                content=body.decode() if body else "",
                content_type=handler.headers.get("Content-Type", "") if body else "",
                seen_nonce=self._seen_nonce)
        except (KeyError, mohawk.exc.HawkFail) as exc:
            return None, f"bad Hawk signature ({type(exc).__name__})"
        return receiver.resource.credentials["id"], None

    def _seen_nonce(self, sender_id: str, nonce: str, timestamp: str) -> bool:
        # a replayed request is refused, as Taskcluster's auth does
        with self._lock:
            key = (sender_id, nonce, str(timestamp))
            seen = key in self._nonces
            self._nonces.add(key)
        return seen

    def _list(self, provisioner_id: str, worker_type: str, query: dict[str, str],
              fault: str | None) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            pool = (provisioner_id, worker_type)
            workers = sorted((worker for worker in self.workers.values()
                              if (worker.provisioner_id, worker.worker_type) == pool),
                             key=lambda worker: (worker.worker_group, worker.worker_id))
        if query.get("quarantined") in ("true", "false"):
            wanted = query["quarantined"] == "true"
            workers = [worker for worker in workers
                       if (worker.quarantine_until is not None and worker.quarantine_until > now) == wanted]
        limit = max(1, min(int(query.get("limit") or 1000), 1000))
        start = int(query["continuationToken"].removeprefix("after-")) if "continuationToken" in query else 0
        page = workers[start:start + limit]
        listed = [self._listed(worker) for worker in page]
        if fault == "malformed" and listed:
            del listed[0]["workerId"]
        document: dict[str, Any] = {"workers": listed}
        if start + limit < len(workers):
            document["continuationToken"] = f"after-{start + limit}"
        return document

    @staticmethod
    def _listed(worker: FakeWorker) -> dict[str, Any]:
        item: dict[str, Any] = {
            "workerGroup": worker.worker_group, "workerId": worker.worker_id,
            "workerPoolId": queue_id(worker.provisioner_id, worker.worker_type),
            "firstClaim": tc_time(worker.first_claim), "state": "unmanaged", "capacity": 0,
            "providerId": "none"}
        if worker.last_active is not None:
            item["lastDateActive"] = tc_time(worker.last_active)
        if worker.quarantine_until is not None:
            item["quarantineUntil"] = tc_time(worker.quarantine_until)
        if worker.latest_task is not None:
            item["latestTask"] = {"taskId": worker.latest_task[0], "runId": worker.latest_task[1]}
        return item

    def _worker_response(self, worker: FakeWorker) -> dict[str, Any]:
        document: dict[str, Any] = {
            "provisionerId": worker.provisioner_id, "workerType": worker.worker_type,
            "workerGroup": worker.worker_group, "workerId": worker.worker_id,
            "recentTasks": ([{"taskId": worker.latest_task[0], "runId": worker.latest_task[1]}]
                            if worker.latest_task else []),
            "expires": tc_time(self.clock() + timedelta(days=1)),
            "firstClaim": tc_time(worker.first_claim), "actions": [],
            "quarantineDetails": list(worker.quarantine_details)}
        if worker.last_active is not None:
            document["lastDateActive"] = tc_time(worker.last_active)
        if worker.quarantine_until is not None:
            document["quarantineUntil"] = tc_time(worker.quarantine_until)
        return document

    def _quarantine(self, handler: BaseHTTPRequestHandler, key: tuple[str, ...], client_id: str | None,
                    body: bytes) -> None:
        scope = "queue:quarantine-worker:" + "/".join(key)
        if self.credentials is not None:
            scopes = self.credentials[client_id][1] if client_id else []
            if not any(scope == held or (held.endswith("*") and scope.startswith(held[:-1]))
                       for held in scopes):
                return _send(handler, 403, {
                    "code": "InsufficientScopes",
                    "message": f"Client ID {client_id or '(none)'} does not have sufficient scopes "
                               f"and is missing the following scopes:\n\n```\n{scope}\n```"})
        try:
            payload = json.loads(body)
            until = parse_time(payload["quarantineUntil"])
            reason = payload.get("quarantineInfo")
        except (ValueError, KeyError, TypeError):
            return _send(handler, 400, {"code": "InputValidationError", "message": "bad payload"})
        with self._lock:
            worker = self.workers.get(key)  # type: ignore[arg-type]
            if worker is None:
                return _send(handler, 404, {"code": "ResourceNotFound", "message": "no such worker"})
            worker.quarantine_until = until
            worker.quarantine_details.append(self._detail(client_id or "anonymous", until, reason))
        _send(handler, 200, self._worker_response(worker))


def _send(handler: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
    _send_raw(handler, status, json.dumps(document).encode(), "application/json")


def _send_raw(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except OSError:
        pass  # the client gave up (a stalled answer): nothing to tell


def main(argv: list[str] | None = None) -> None:
    """`python -m releng_hardware.tools.fake_taskcluster`: a stand-in for the simulator's fleet (scripts/run),
    a few of its machines quarantined, until interrupted."""
    import argparse

    from .simulate import fleet
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--machines", type=int, default=40, help="the simulator's --machines")
    parser.add_argument("--quarantined", type=int, default=3)
    parser.add_argument("--provisioner", default="releng-hardware")
    args = parser.parse_args(argv)
    now = utcnow()
    fake_tc = FakeTaskcluster().start(args.port)
    for index, machine in enumerate(fleet(args.machines)):
        quarantined = index % max(1, args.machines // max(1, args.quarantined)) == 0 \
            and index // max(1, args.machines // max(1, args.quarantined)) < args.quarantined
        fake_tc.add_worker(args.provisioner, machine.worker_type, machine.worker_group, machine.worker_id,
                           first_claim=now - timedelta(days=30), last_active=now - timedelta(minutes=20),
                           quarantine_until=now + timedelta(days=2) if quarantined else None,
                           reason="simulated: disk errors" if quarantined else None, by="standin-seed")
    print(f"Taskcluster stand-in at {fake_tc.root_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake_tc.close()


if __name__ == "__main__":
    main()
