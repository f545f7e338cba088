"""scripts/services: installs what is missing, starts what is down (checked with --dry-run)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "services"
BASH = shutil.which("bash")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port that answers, standing in for a server already up."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def fake_bin(tmp_path: Path, *, uid: int = 0, commands: tuple[str, ...] = ("apt-get",)) -> Path:
    """A PATH holding only what the script needs, plus stand-ins for `commands` and `id`."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in ("seq", "sleep", "mkdir", "env"):
        (directory / tool).symlink_to(shutil.which(tool))
    for name, body in (("id", f"echo {uid}"), *((command, "exit 97") for command in commands)):
        (directory / name).write_text(f"#!{BASH}\n{body}\n")
        (directory / name).chmod(0o755)
    return directory


def services(path: Path, redis_port: int, rabbitmq_port: int, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(path), "SBIN_PATH": str(path / "no-sbin"),
           "REDIS_PORT": str(redis_port), "RABBITMQ_PORT": str(rabbitmq_port)}
    return subprocess.run([BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


def planned(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.removeprefix("would run: ") for line in result.stdout.splitlines()
            if line.startswith("would run: ")]


def test_missing_servers_are_installed_with_apt_get_then_started(tmp_path):
    redis_port, rabbitmq_port = free_port(), free_port()
    plan = planned(services(fake_bin(tmp_path), redis_port, rabbitmq_port, "--dry-run"))
    assert plan[:2] == [
        "apt-get update -qq",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server rabbitmq-server"]
    assert any(step.startswith("redis-server --daemonize yes") and f"--port {redis_port}" in step
               for step in plan)
    assert any(step.endswith(f"RABBITMQ_NODE_PORT={rabbitmq_port} rabbitmq-server -detached")
               for step in plan)


def test_a_normal_user_installs_and_starts_through_sudo(tmp_path):
    plan = planned(services(fake_bin(tmp_path, uid=1000), free_port(), free_port(), "--dry-run"))
    assert plan and all(step.startswith("sudo ") for step in plan), plan


def test_installed_servers_that_are_down_are_only_started(tmp_path):
    path = fake_bin(tmp_path, commands=("apt-get", "redis-server", "rabbitmq-server"))
    plan = planned(services(path, free_port(), free_port(), "--dry-run"))
    assert not any("apt-get" in step for step in plan)
    assert sum("redis-server --daemonize" in step or "rabbitmq-server -detached" in step
               for step in plan) == 2


def test_a_server_already_up_is_neither_installed_nor_started(tmp_path, listening_port):
    plan = planned(services(fake_bin(tmp_path), listening_port, free_port(), "--dry-run"))
    assert plan[1].endswith("apt-get install -y -qq rabbitmq-server")
    assert not any("redis-server" in step for step in plan)


def test_without_apt_get_it_names_what_to_install_and_fails(tmp_path):
    result = services(fake_bin(tmp_path, commands=()), free_port(), free_port(), "--dry-run")
    assert result.returncode == 1
    assert "not installed: redis-server rabbitmq-server" in result.stderr


def test_an_unknown_argument_is_refused(tmp_path):
    result = services(fake_bin(tmp_path), free_port(), free_port(), "--install-everything")
    assert result.returncode == 2 and "usage" in result.stderr
