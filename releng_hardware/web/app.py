"""The web application: create_app assembles the blueprints, the error handlers and the headers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestURITooLarge

from . import api

from . import dashboard

from . import dockerflow

from . import labels

from . import metrics

from . import openapi
from .appstate import AppState, install
from ..core.config import Config
from ..core.params import BadParameter
from .responses import MAX_URL_LENGTH, ApiError, answer_redis_errors, error_response
from ..store.machines import Store, open_redis
from ..core.times import utcnow

log = logging.getLogger(__name__)


def create_app(config: Config, redis: Any = None, *, clock: Callable = utcnow) -> Flask:
    """The web application; pass `redis` to inject a client (tests pass fakeredis)."""
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    client = redis if redis is not None else open_redis(
        config.redis_url, config.redis_timeout, tls_verify=config.redis_tls_verify)
    install(app, AppState(
        store=Store.from_config(config, client),
        config=config,
        clock=clock,
        version=dockerflow.load_version(Path(__file__).resolve().parent.parent),
    ))
    for blueprint in (api.bp, labels.bp, dockerflow.bp, dashboard.bp, metrics.bp, openapi.bp):
        app.register_blueprint(blueprint)
    app.before_request(_refuse_long_urls)
    app.after_request(_common_headers)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(BadParameter, _bad_parameter)
    app.register_error_handler(HTTPException, _http_error)
    answer_redis_errors(app, _redis_down)
    app.register_error_handler(Exception, _unexpected)
    return app


def _refuse_long_urls() -> None:
    if len(request.path) + len(request.query_string) > MAX_URL_LENGTH:
        raise RequestURITooLarge(f"a URL of this service is at most {MAX_URL_LENGTH} characters")


def _common_headers(response: Response) -> Response:
    if response.mimetype in ("application/json", "text/csv"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.error, exc.message, **exc.extra)


def _bad_parameter(exc: BadParameter) -> Response:
    return error_response(400, "bad_parameter", str(exc), parameter=exc.name)


def _http_error(exc: HTTPException) -> Response:
    body = error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                          exc.description or "")
    allow = exc.get_response().headers.get("Allow")
    if allow:
        body.headers["Allow"] = allow
    return body


def _redis_down(status: int) -> Response:
    return error_response(status, "redis_unavailable", "the data store is not answering; retry shortly")


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.path[:200])
    return error_response(500, "internal_error", "unexpected server error")
