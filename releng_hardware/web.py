"""The read-only HTTP API: a Flask application factory with thin views."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import orjson
import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import __version__
from .config import Config
from .fleet import (CSV_COLUMNS, BadParameter, MachineQuery, csv_row, current_fleet,
                    current_machine, duration_arg, select, summary)
from .store import Store, open_redis
from .times import parse_time, utcnow

log = logging.getLogger(__name__)

MAX_MACHINE_ID = 80
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
MACHINE_PARAMS = {"datacenter", "worker_type", "provisioner", "state", "stale", "seen_within",
                  "sort", "format"}


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    return Response(orjson.dumps(data), status=status, mimetype="application/json",
                    headers=headers)


def _error_response(status: int, error: str, message: str,
                    headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return json_response({"error": error, "message": message, "status": status, **extra}, status,
                         headers)


def query_args(allowed: set[str]) -> dict[str, str]:
    """The request's query parameters, refusing unknown and repeated ones."""
    args: dict[str, str] = {}
    for name, values in request.args.lists():
        if name not in allowed:
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {name!r:.60}",
                           parameter=name[:60], allowed=sorted(allowed))
        if len(values) > 1:
            raise ApiError(400, "repeated_parameter", f"query parameter {name!r} given twice",
                           parameter=name)
        args[name] = values[0]
    return args


def conditional(payload: bytes, mimetype: str, etag: str | None = None, *, weak: bool = False) -> Response:
    """A response with an ETag (of the payload unless given), answered 304 when the client has it."""
    response = Response(payload, mimetype=mimetype)
    response.set_etag(etag or hashlib.blake2b(payload, digest_size=16).hexdigest(), weak=weak)
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)


def machines_etag(version: int, machines: list[dict]) -> str:
    """Changes with the data, the query and each machine's stale flags, but not with ages alone.

    age_seconds grows every second; a weak ETag lets a poller keep its copy
    (ages follow from lastseen and the Date header) until something real changes.
    """
    flags = "".join("i" if m["idle_with_work_waiting"] else ("s" if m["stale"] else "-")
                    for m in machines)
    source = f"{version}|{request.query_string.decode('latin-1')}|{request.accept_mimetypes}|{flags}"
    return hashlib.blake2b(source.encode(), digest_size=16).hexdigest()


def load_version(root: Path) -> dict[str, str]:
    """version.json when the build wrote one, else what the checkout tells."""
    path = root / "version.json"
    if path.is_file():
        return json.loads(path.read_text())
    commit = (os.environ.get("SOURCE_VERSION") or os.environ.get("HEROKU_SLUG_COMMIT")
              or _git(root, "rev-parse", "HEAD"))
    return {
        "source": _git(root, "remote", "get-url", "origin") or "unknown",
        "version": __version__,
        "commit": commit or "unknown",
        "build": os.environ.get("HEROKU_RELEASE_VERSION", "local"),
    }


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def create_app(config: Config, redis: Any = None, *, clock: Callable = utcnow) -> Flask:
    """The web application; pass `redis` to inject a client (tests pass fakeredis)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    client = redis if redis is not None else open_redis(config.redis_url, config.redis_timeout)
    store = Store(client, config.redis_key_prefix)
    app.extensions["releng_hardware"] = {"store": store, "config": config, "clock": clock}
    version = load_version(Path(__file__).resolve().parent.parent)

    @app.get("/machines")
    def machines() -> Response:
        args = query_args(MACHINE_PARAMS)
        query = _machine_query(args)
        wants_csv = args.get("format") == "csv" or (
            "format" not in args and request.accept_mimetypes.best_match(
                ["application/json", "text/csv"]) == "text/csv")
        if args.get("format") not in (None, "json", "csv"):
            raise ApiError(400, "bad_parameter", "format: must be json or csv", parameter="format")
        data_version = store.data_version()  # before the data: a newer ETag never labels older data
        selected = select(current_fleet(store, config, clock())[0], query)
        etag = machines_etag(data_version, selected)
        if wants_csv:
            return conditional(_csv(selected).encode(), "text/csv", etag, weak=True)
        return conditional(orjson.dumps(selected), "application/json", etag, weak=True)

    @app.get("/machines/<path:machine_id>")
    def machine(machine_id: str) -> Response:
        query_args(set())
        now = clock()
        if len(machine_id) > MAX_MACHINE_ID or not _valid_machine_id(machine_id):
            raise ApiError(400, "bad_machine_id",
                           "a machine id is <datacenter>:<hostname> or a hostname, "
                           "made of letters, digits, - and _")
        if ":" not in machine_id:
            candidates = store.machine_ids_for_hostname(machine_id)
            if not candidates:
                raise ApiError(404, "not_found", f"{machine_id} has not been seen since tracking began")
            if len(candidates) > 1:
                raise ApiError(409, "ambiguous_hostname",
                               f"{machine_id} exists in several datacenters", candidates=candidates)
            machine_id = candidates[0]
        record = store.machine(machine_id)
        if record is None:
            raise ApiError(404, "not_found", f"{machine_id} has not been seen since tracking began")
        return json_response(current_machine(store, config, record, now))

    @app.get("/summary")
    def fleet_summary() -> Response:
        args = query_args({"stale_after"})
        stale_after = (duration_arg("stale_after", args["stale_after"])
                       if "stale_after" in args else config.stale_after)
        machines, pending = current_fleet(store, config, clock(), stale_after)
        return conditional(orjson.dumps(summary(machines, pending, stale_after)), "application/json")

    @app.get("/__lbheartbeat__")
    def lbheartbeat() -> Response:
        return json_response({"status": "ok"})

    @app.get("/__version__")
    def version_info() -> Response:
        return json_response(version)

    @app.get("/__heartbeat__")
    def heartbeat() -> Response:
        now = clock()
        checks: dict[str, str] = {}
        details: dict[str, Any] = {}
        try:
            store.ping()
            listener = store.listener_status()
            checks["redis"] = "ok"
        except REDIS_ERRORS as exc:
            checks["redis"] = "error"
            details["redis"] = f"Redis unavailable: {type(exc).__name__}"
            listener = None
        if listener is not None:
            checks["listener"], details["listener"] = _listener_check(listener, now, config)
        status = "error" if "error" in checks.values() else (
            "warning" if "warning" in checks.values() else "ok")
        return json_response({"status": status, "checks": checks, "details": details},
                             500 if status == "error" else 200)

    @app.after_request
    def headers(response: Response) -> Response:
        if response.mimetype in ("application/json", "text/csv"):
            response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return _error_response(exc.status, exc.error, exc.message, **exc.extra)

    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter) -> Response:
        return _error_response(400, "bad_parameter", str(exc), parameter=exc.name)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = exc.get_response()
        body = _error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                               exc.description or "")
        for name in ("Allow",):
            if name in response.headers:
                body.headers[name] = response.headers[name]
        return body

    def redis_down(exc: Exception) -> Response:
        log.warning("Redis unavailable: %s", exc)
        return _error_response(503, "redis_unavailable", "the data store is not answering; retry shortly",
                               headers={"Retry-After": "5"})

    for error_class in REDIS_ERRORS:
        app.register_error_handler(error_class, redis_down)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.path)
        return _error_response(500, "internal_error", "unexpected server error")

    # The dashboard page, /metrics and /openapi.json live in their own modules.
    from . import dashboard, metrics, openapi
    for blueprint in (dashboard.bp, metrics.bp, openapi.bp):
        app.register_blueprint(blueprint)

    return app


def _machine_query(args: dict[str, str]) -> MachineQuery:
    return MachineQuery.from_args({name: value for name, value in args.items() if name != "format"})


def _valid_machine_id(machine_id: str) -> bool:
    parts = machine_id.split(":")
    return len(parts) <= 2 and all(
        0 < len(part) <= 38 and all(c.isascii() and (c.isalnum() or c in "-_") for c in part)
        for part in parts)


def _csv(machines: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(machine) for machine in machines)
    return out.getvalue()


def _listener_check(listener: dict[str, str], now: Any, config: Config) -> tuple[str, Any]:
    heartbeat_at = max(listener.get("heartbeat_at") or "", listener.get("last_message_at") or "")
    detail: dict[str, Any] = {name: listener.get(name) for name in (
        "heartbeat_at", "last_message_at", "last_connected_at", "newest_event_at")}
    if not heartbeat_at:
        detail["problem"] = "the listener has never reported"
        return "error", detail
    silence = (now - parse_time(heartbeat_at)).total_seconds()
    detail["seconds_since_heartbeat"] = round(silence, 1)
    if silence > config.listener_stale_after:
        detail["problem"] = f"no listener heartbeat for {silence:.0f}s"
        return "error", detail
    last_message_at = listener.get("last_message_at")
    quiet = (now - parse_time(last_message_at)).total_seconds() if last_message_at else None
    if quiet is None or quiet > config.stale_after:
        # alive but fed nothing: a lost binding or a silent queue looks just like this
        detail["problem"] = ("the listener has received no message yet" if quiet is None
                             else f"the listener is up but has received no message for {quiet:.0f}s")
        return "warning", detail
    return "ok", detail
