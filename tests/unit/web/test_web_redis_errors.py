"""Every error a Redis server can answer reaches the web as a 503, never a 500.

fakeredis cannot answer READONLY, OOM, NOAUTH or MASTERDOWN, so a tiny server on a
loopback socket speaks the Redis protocol and answers every data command with the
error under test, through redis-py's real reply parser.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import Iterator

import pytest

from releng_hardware.web.app import create_app
from tests.conftest import NOW, make_config

REPLIES = {
    "readonly": b"-READONLY You can't write against a read only replica.\r\n",
    "oom": b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    "noauth": b"-NOAUTH Authentication required.\r\n",
    "wrongpass": b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    "noperm": b"-NOPERM User default has no permissions to run the 'hgetall' command\r\n",
    "masterdown": b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
    "busy": b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n",
    "loading": b"-LOADING Redis is loading the dataset in memory\r\n",
    "wrongtype": b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    "error": b"-ERR unknown command 'HGETALL', with args beginning with: 'machines'\r\n",
    "garbage": b"?not the Redis protocol\r\n",
    "hang up": b"",
}
DATA_PATHS = ("/machines", "/machines?format=csv", "/machines/mdc1:t-linux64-ms-100",
              "/machines/t-linux64-ms-100", "/summary", "/metrics")
REDIS_FREE_PATHS = ("/__lbheartbeat__", "/__version__", "/openapi.json")
OUTAGES = {"loading", "hang up"}  # they pass; every other reply needs an operator


class FailingRedis(socketserver.ThreadingTCPServer):
    """Speaks RESP on a loopback port: a connection's set-up succeeds, every other command gets `reply`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        """redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.server_address[1]}/0"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while command := self._read_command():
            if command[0].upper() == b"CLIENT":  # redis-py names itself on connect
                self.wfile.write(b"+OK\r\n")
            elif not self.server.reply:
                return
            else:
                self.wfile.write(self.server.reply)

    def _read_command(self) -> list[bytes]:
        header = self.rfile.readline()
        if not header.startswith(b"*"):
            return []
        command = []
        for _ in range(int(header[1:])):
            size = int(self.rfile.readline()[1:])
            command.append(self.rfile.read(size + 2)[:-2])
        return command


@pytest.fixture(params=sorted(REPLIES))
def failing_redis(request) -> Iterator[FailingRedis]:
    server = FailingRedis(REPLIES[request.param])
    server.name = request.param
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def failing_client(failing_redis):
    app = create_app(make_config(redis_url=failing_redis.url, redis_timeout=1.0), clock=lambda: NOW)
    return app.test_client()


def test_every_data_endpoint_answers_503_json(failing_client):
    for path in DATA_PATHS:
        response = failing_client.get(path)
        assert response.status_code == 503, (path, response.get_data(as_text=True)[:300])
        assert response.mimetype == "application/json"
        assert response.get_json()["error"] == "redis_unavailable"
        assert response.headers["Retry-After"].isdigit()


def test_the_dashboard_answers_an_html_503_that_retries(failing_client):
    for path in ("/", "/machine/mdc1:t-linux64-ms-100"):
        response = failing_client.get(path)
        assert response.status_code == 503, path
        assert response.mimetype == "text/html"
        assert "Data store unavailable" in response.get_data(as_text=True)
        assert response.headers["Retry-After"].isdigit()


def test_heartbeat_keeps_its_dockerflow_shape(failing_client):
    response = failing_client.get("/__heartbeat__")
    assert response.status_code == 500
    body = response.get_json()
    assert body["status"] == "error" and body["checks"] == {"redis": "error"}
    assert body["details"]["redis"].startswith("Redis unavailable: ")


def test_what_needs_no_redis_keeps_answering(failing_client):
    for path in REDIS_FREE_PATHS:
        assert failing_client.get(path).status_code == 200, path


def test_each_failure_is_logged_once_as_a_warning_for_an_outage_else_as_an_error(
        failing_redis, failing_client, caplog):
    caplog.set_level(logging.WARNING, logger="releng_hardware")
    for path in ("/machines", "/"):
        caplog.clear()
        failing_client.get(path)
        [record] = [r for r in caplog.records if r.getMessage().startswith("Redis unavailable")]
        expected = logging.WARNING if failing_redis.name in OUTAGES else logging.ERROR
        assert (record.levelno, path) == (expected, path), record.getMessage()
