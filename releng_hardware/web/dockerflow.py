"""Dockerflow health and version endpoints: /__lbheartbeat__, /__heartbeat__, /__version__."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, Response

from .. import __version__
from .appstate import app_state
from ..views.fleet import listener_check, taskcluster_check
from .responses import REDIS_ERRORS, json_response

bp = Blueprint("dockerflow", __name__)


@bp.get("/__lbheartbeat__")
def lbheartbeat() -> Response:
    """200 while the process is up; checks nothing else."""
    return json_response({"status": "ok"})


@bp.get("/__version__")
def version_info() -> Response:
    """What is deployed (read once at start-up)."""
    return json_response(app_state().version)


@bp.get("/__heartbeat__")
def heartbeat() -> Response:
    """Redis answers and the listener reported recently: 200, else 500 naming the check; a late
    Taskcluster poll is a warning."""
    app = app_state()
    config, store = app.config, app.store
    checks: dict[str, str] = {}
    details: dict[str, Any] = {}
    listener: dict[str, str] | None
    taskcluster: dict[str, Any] | None
    try:
        store.ping()
        listener = store.listener_status()
        taskcluster = store.taskcluster_status()
        checks["redis"] = "ok"
    except REDIS_ERRORS as exc:
        checks["redis"] = "error"
        details["redis"] = f"Redis unavailable: {type(exc).__name__}"
        listener = taskcluster = None
    now = app.clock()
    if listener is not None:
        checks["listener"], details["listener"] = listener_check(
            listener, now, config.listener_stale_after, config.stale_after)
    if taskcluster is not None:
        checks["taskcluster"], details["taskcluster"] = taskcluster_check(
            taskcluster, now, config.taskcluster_poll)
    status = "error" if "error" in checks.values() else (
        "warning" if "warning" in checks.values() else "ok")
    return json_response({"status": status, "checks": checks, "details": details},
                         500 if status == "error" else 200)


def load_version(root: Path) -> dict[str, str]:
    """version.json when the build wrote one, else what the checkout tells."""
    path = root / "version.json"
    if path.is_file():
        version = json.loads(path.read_text())
        # a build that cloned with a token may have written it into the source too
        version["source"] = public_source_url(str(version.get("source", ""))) or "unknown"
        return version
    commit = (os.environ.get("SOURCE_VERSION") or os.environ.get("HEROKU_SLUG_COMMIT")
              or _git(root, "rev-parse", "HEAD"))
    return {
        "source": public_source_url(_git(root, "remote", "get-url", "origin")) or "unknown",
        "version": __version__,
        "commit": commit or "unknown",
        "build": os.environ.get("HEROKU_RELEASE_VERSION", "local"),
    }


def public_source_url(url: str) -> str:
    """The repository URL without user name, password or token, or "" when it has no host."""
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if not parts.hostname:
            return ""
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    # scp-like `user@host:path`: the user part is dropped too
    _, _, rest = url.rpartition("@")
    return rest if ":" in rest and not rest.startswith(("/", ".")) else ""


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
