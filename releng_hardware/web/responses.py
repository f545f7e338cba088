"""What every view shares: JSON answers and errors, strict query parsing, conditional requests.

Blueprints import from here; this module imports no view, so imports flow one way.
"""

from __future__ import annotations

import gc
import hashlib
from contextlib import contextmanager
import logging
from typing import Any, Callable, Iterator, Mapping

import orjson
from flask import Blueprint, Flask, Response, request

from ..store.machines import REDIS_ERRORS, is_passing_outage

RETRY_AFTER_SECONDS = 5
# No request of this API needs a longer URL (a machine id is at most 80 characters, every
# parameter a short word): a longer one is refused before anything is parsed or echoed.
# gunicorn itself refuses request lines over 4094 bytes.
MAX_URL_LENGTH = 2048
# The page size of a request giving a cursor without a limit.
DEFAULT_LIMIT = 500
# Where a paged answer says how to go on (the body keeps the unpaged answer's shape).
NEXT_CURSOR_HEADER = "X-Next-Cursor"
# What `format` may ask of an answer served as JSON or CSV.
FORMATS = ("json", "csv")

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    return Response(orjson.dumps(data), status=status, mimetype="application/json",
                    headers=dict(headers or {}))


def error_response(status: int, error: str, message: str,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """The one JSON error shape: {"error", "message", "status", ...}."""
    return json_response({"error": error, "message": message, "status": status, **extra}, status,
                         headers)


def answer_redis_errors(target: Flask | Blueprint, render: Callable[[int], Response]) -> None:
    """Answer every Redis failure under `target` with `render(503)` plus Retry-After; log it once.

    The one Redis->503 path: the API renders JSON, the dashboard a page; status, log line and
    Retry-After are decided here for both.
    """
    def redis_down(exc: Exception) -> Response:
        _log_redis_error(exc)
        response = render(503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for error_class in REDIS_ERRORS:
        target.register_error_handler(error_class, redis_down)


def _log_redis_error(exc: Exception) -> None:
    """One line per Redis failure: a warning for an outage, an error when it needs an operator."""
    log.log(logging.WARNING if is_passing_outage(exc) else logging.ERROR,
            "Redis unavailable on %s: %s: %s", request.path[:200], type(exc).__name__,
            str(exc)[:200])


def query_args(allowed: tuple[str, ...] | frozenset[str] | set[str], *,
               drop_empty: bool = False) -> dict[str, str]:
    """The request's query parameters, refusing unknown and repeated ones.

    drop_empty: an unselected HTML <select> submits `name=`, which means "any" on a page.
    """
    args: dict[str, str] = {}
    for name, values in request.args.lists():
        if name not in allowed:
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {name[:60]!r}",
                           parameter=name[:60], allowed=sorted(allowed))
        if len(values) > 1:
            raise ApiError(400, "repeated_parameter", f"query parameter {name!r} given twice",
                           parameter=name)
        if values[0] != "" or not drop_empty:
            args[name] = values[0]
    return args


def wants_csv(format_arg: str | None) -> bool:
    """Whether to answer CSV: as `format` asks when given (json or csv, else a 400), else as the
    Accept header prefers."""
    if format_arg is not None:
        if format_arg not in FORMATS:
            raise ApiError(400, "bad_parameter", "format: must be json or csv", parameter="format")
        return format_arg == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def conditional(payload: bytes, mimetype: str, etag: str | None = None, *,
                weak: bool = False) -> Response:
    """A response with an ETag (of the payload unless given), answered 304 when the client has it."""
    response = Response(payload, mimetype=mimetype)
    response.set_etag(etag or digest(payload), weak=weak)
    response.headers["Cache-Control"] = "no-cache"
    response.make_conditional(request)  # in place: werkzeug's type of what it returns is its own
    return response


def digest(data: bytes) -> str:
    """A short hex digest for ETags."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a view builds a whole fleet's answer.

    Ten thousand machines are tens of thousands of fresh dicts and lists, none in a cycle:
    reference counting frees them all, yet with the collector on, dozens of collections
    walk them and find nothing, which costs about as much as building them (bench/README.md).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
