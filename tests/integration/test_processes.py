"""The real processes: gunicorn from the Procfile line, the listener script, preload and simulate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from releng_hardware.tools.simulate import backlog
from releng_hardware.core.times import utcnow
from tests.conftest import AMQP_URL, REDIS_URL, ROOT, wait_for
from tests.integration.support import free_port, get

BIN = os.path.dirname(sys.executable)


def service_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULSE", "AMQP", "REDIS"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def test_gunicorn_from_the_procfile_serves_the_machines(start_gunicorn, real_store, redis_prefix):
    server = start_gunicorn(REDIS_URL, redis_prefix)
    real_store.preload({"mdc1:t-linux64-ms-100": utcnow() - timedelta(minutes=3)})
    status, headers, body, _ = get(server.port, "/machines")
    machines = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert [m["id"] for m in machines] == ["mdc1:t-linux64-ms-100"]
    assert 170 <= machines[0]["age_seconds"] <= 300
    status, _, body, _ = get(server.port, "/machines/mdc9:nobody")
    assert status == 404 and json.loads(body)["error"] == "not_found"


def test_gunicorn_stops_cleanly_on_sigterm(start_gunicorn, real_store, redis_prefix):
    server = start_gunicorn(REDIS_URL, redis_prefix)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=25) == 0


def test_listener_script_consumes_and_exits_0_on_sigterm(amqp_config, real_store, redis_prefix, publish,
                                                         provisioner_id):
    env = service_env(PULSE_URL=AMQP_URL, REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix,
                      PULSE_QUEUE_NAME=amqp_config.pulse_queue_name, PROVISIONER_IDS=provisioner_id)
    process = subprocess.Popen([sys.executable, "listen_to_pulse.py"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: real_store.listener_status().get("last_connected_at"), 20, "listener never connected")
        publish(backlog(200, machines=10, end=utcnow(), provisioner_id=provisioner_id))
        wait_for(lambda: int(real_store.listener_status().get("processed", 0)) >= 200, 20,
                 "listener did not process the messages")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode()
    assert "stopped after 200 messages" in output
    assert "guest:guest" not in output


def test_preload_script_reads_stdin_into_redis(real_store, redis_prefix):
    data = json.dumps([{"machine": "t-linux64-ms-100", "datacenter": "mdc1",
                        "lastseen": "2026-11-20T08:47:50.939514"}]).encode()
    env = service_env(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    result = subprocess.run([sys.executable, "preload_redis.py"], cwd=ROOT, env=env, input=data,
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert b"1 written, 0 kept" in result.stdout
    assert real_store.machine("mdc1:t-linux64-ms-100").lastseen == "2026-11-20T08:47:50.939514"


def test_preload_with_redis_down_fails_clearly():
    env = service_env(REDIS_URL="redis://127.0.0.1:1/0", REDIS_TIMEOUT="1s")
    data = b'[{"machine": "a", "datacenter": "mdc1", "lastseen": "2026-11-20T08:00:00"}]'
    result = subprocess.run([sys.executable, "preload_redis.py"], cwd=ROOT, env=env, input=data,
                            capture_output=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(
        "releng-hardware: Redis at redis://127.0.0.1:1/0 failed during the load: ")


def test_simulator_console_script_publishes_a_backlog(amqp_config, real_store, listener_thread, provisioner_id):
    listener_thread()
    env = service_env(PULSE_URL=AMQP_URL, PROVISIONER_IDS=provisioner_id)
    result = subprocess.run([os.path.join(BIN, "releng-hardware-simulate"), "--backlog", "--count", "300",
                             "--machines", "12"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"published 300 messages" in result.stdout
    wait_for(lambda: int(real_store.listener_status().get("processed", 0)) >= 300, 20,
             "the listener did not get the simulator's messages")
    assert len(real_store.machines()) == 12


def test_simulator_refuses_to_run_without_a_local_broker():
    result = subprocess.run([os.path.join(BIN, "releng-hardware-simulate")],
                            env=service_env(AMQP_USER="x", AMQP_PASS="y"), capture_output=True, timeout=30)
    assert result.returncode == 2 and b"set PULSE_URL" in result.stderr


def test_simulator_waits_for_the_listeners_queue_before_publishing(amqp_config, real_store, listener_thread,
                                                                   provisioner_id):
    env = service_env(PULSE_URL=AMQP_URL, PROVISIONER_IDS=provisioner_id,
                      PULSE_QUEUE_NAME=amqp_config.pulse_queue_name)
    command = [os.path.join(BIN, "releng-hardware-simulate"), "--backlog", "--count", "50",
               "--machines", "5", "--wait-for-listener", "1"]
    alone = subprocess.run(command, env=env, capture_output=True, timeout=60)
    assert alone.returncode == 1 and b"no listener queue" in alone.stderr

    listener_thread()
    result = subprocess.run(command, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: int(real_store.listener_status().get("processed", 0)) >= 50, 20,
             "the listener did not get the simulator's messages")


def test_web_with_bad_configuration_exits_once_with_one_line():
    from tests.integration.support import procfile_command
    command = "exec " + procfile_command("web").replace("$PORT", "18099")
    result = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, timeout=30,
                            env=service_env(REDIS_URL="nonsense://x"))
    assert result.returncode == 2
    assert result.stderr.decode().count("configuration error: REDIS_URL") == 1
    assert "Traceback" not in result.stderr.decode()


def test_gunicorn_run_by_hand_listens_on_port(real_store, redis_prefix):
    port = free_port()
    process = subprocess.Popen([os.path.join(BIN, "gunicorn"), "webserver:app", "--preload"], cwd=ROOT,
                               env=service_env(PORT=str(port), REDIS_URL=REDIS_URL,
                                               REDIS_KEY_PREFIX=redis_prefix),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), 20, f"gunicorn is not listening on PORT {port}")
        assert get(port, "/__lbheartbeat__")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=25)


def _answers(port: int) -> bool:
    try:
        return get(port, "/__lbheartbeat__", timeout=1)[0] == 200
    except OSError:
        return False
