"""Integration helpers: listener and gunicorn processes, broker surgery, a throwaway Redis, references."""

from __future__ import annotations

import http.client
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from kombu import Connection, Producer

from releng_hardware.core.config import Config
from releng_hardware.core.events import PendingEvent, WorkerEvent, parse_message
from releng_hardware.tools.simulate import Message, declare_exchanges
from releng_hardware.core.records import Run
from releng_hardware.store.machines import Store, open_redis
from releng_hardware.core.times import utcnow
from tests.conftest import AMQP_URL, stored_keys, wait_for

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
AMQP_PORT = 5672

MachineState = dict[str, tuple[str, dict[str, Any], tuple[Run, ...]]]


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the listener as a real process ---------------------------------------------

def listener_env(config: Config, **overrides: str) -> dict[str, str]:
    """The environment `listen_to_pulse.py` reads, for the test's queue, prefix and provisioner."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PULSE_URL": AMQP_URL,
        "REDIS_URL": config.redis_url,
        "REDIS_KEY_PREFIX": config.redis_key_prefix,
        "PULSE_QUEUE_NAME": config.pulse_queue_name,
        "PROVISIONER_IDS": ",".join(config.provisioner_ids),
        "BATCH_SIZE": "100",
        "BATCH_MAX_AGE": "0.5",
        # no test reaches the real Taskcluster: the tests of the poll bring their own stand-in
        "TASKCLUSTER_POLL": "0",
        "REDIS_TIMEOUT": "1",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


class ListenerProcess:
    """`python listen_to_pulse.py` in its own process, its output collected in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([PYTHON, "listen_to_pulse.py"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[str]:
        """The process's output, one entry a line."""
        return self.log().splitlines()

    def wait_consuming(self, connection: int = 1, timeout: float = 15.0) -> None:
        """Wait for the log line that says consumer connection number `connection` is up."""
        wait_for(lambda: f"(connection {connection})" in self.log() or not self.alive(), timeout,
                 f"the listener never logged connection {connection}:\n{self.log()[-3000:]}")
        assert self.alive(), f"the listener exited:\n{self.log()[-3000:]}"

    def signal(self, signum: int) -> None:
        """Send a signal to the process."""
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit code, waiting at most `timeout` seconds."""
        return self.process.wait(timeout=timeout)

    def broker_ports(self, broker_port: int = AMQP_PORT) -> set[int]:
        """Local ports of this process's TCP connections to the broker (or a proxy on its way)."""
        return process_tcp_ports(self.pid, remote_port=broker_port)

    def close(self) -> None:
        """Kill the process if it still runs, and close its log."""
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def process_tcp_ports(pid: int, remote_port: int) -> set[int]:
    """Local ports of the established TCP sockets of `pid` whose peer port is `remote_port`."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            # state 01 is ESTABLISHED
            if inode in inodes and state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


# -- a TCP proxy that can go silent ---------------------------------------------------

class SilentProxy:
    """A TCP proxy on a free loopback port to `target_port`, in threads of the test process.

    `silence()` makes every connection open at that moment a black hole, as a NAT or a load
    balancer losing its state does: bytes are read and dropped both ways and nothing is closed,
    so neither end learns anything from TCP. Connections made afterwards go through.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[dict[str, Any]] = []
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, user: str = "guest", password: str = "guest") -> str:
        """An AMQP URL through this proxy."""
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def silence(self) -> int:
        """Stop forwarding on every open connection, closing none; how many were silenced."""
        with self._lock:
            live = [link for link in self._links if not link["done"] and not link["silent"]]
            for link in live:
                link["silent"] = True
        return len(live)

    def open_connections(self) -> int:
        """Connections still forwarding."""
        with self._lock:
            return sum(1 for link in self._links if not link["done"] and not link["silent"])

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed = True
        self._server.close()
        with self._lock:
            for link in self._links:
                link["done"] = True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            link = {"sockets": (client, upstream), "silent": False, "done": False}
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), name="proxy-pump", daemon=True).start()

    def _pump(self, link: dict[str, Any]) -> None:
        client, upstream = link["sockets"]
        peer = {client: upstream, upstream: client}
        watched = [client, upstream]
        while watched and not link["done"]:
            readable, _, _ = select.select(watched, [], [], 0.2)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                    if data and not link["silent"]:
                        peer[sock].sendall(data)
                        continue
                except OSError:
                    data = b""
                if link["silent"]:
                    # a black hole: not even a close or a reset reaches the other end
                    if not data:
                        watched.remove(sock)
                else:
                    watched.clear()
                    break
        while not link["done"]:  # both ends gone quiet: hold the sockets until close()
            time.sleep(0.2)
        client.close()
        upstream.close()


# -- the broker ----------------------------------------------------------------

def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl quietly on the shared node; its standard output."""
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


Ctl = Callable[..., str]


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class RabbitNode:
    """A RabbitMQ node of the test's own: free ports, no plugin, its files in a temporary directory.

    Stopping and starting its application is a full broker restart that no other test sees.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"rh-test-{uuid.uuid4().hex[:8]}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="rh-faults-rabbit-"))
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.port}\nloopback_users = none\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not the machine's own node settings
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),  # the Erlang cookie lives here
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """True when this machine has RabbitMQ's server scripts."""
        return (RABBITMQ_BIN / "rabbitmq-server").exists() and (RABBITMQ_BIN / "rabbitmqctl").exists()

    @property
    def url(self) -> str:
        """AMQP URL of the node."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> "RabbitNode":
        """Start the node and wait until it serves AMQP."""
        with open(self.dir / "server.log", "wb") as log:
            # its own session, so that close() can end the node and its helpers by group
            self.process = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], cwd=self.dir,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_for(lambda: self.answers() or self.process.poll() is not None, 120,
                 "the test's RabbitMQ node did not start")
        assert self.process.poll() is None, (self.dir / "server.log").read_text()[-3000:]
        return self

    def answers(self) -> bool:
        """True when the AMQP port accepts connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def ctl(self, *args: str) -> str:
        """rabbitmqctl on this node, quietly; its standard output."""
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.name, *args],
                              env=self.env, capture_output=True, text=True, check=True,
                              timeout=120).stdout

    def close(self) -> None:
        """Stop the node (kill it if it lingers) and remove its files."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.ctl("stop")
                self.process.wait(timeout=30)
            except (subprocess.SubprocessError, OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def broker_connections(peer_ports: Iterable[int]) -> list[dict[str, str]]:
    """The broker's view (pid, peer_port, heartbeat timeout) of the connections from these ports."""
    wanted = {str(port) for port in peer_ports}
    rows = []
    for line in rabbitmqctl("list_connections", "pid", "peer_port", "timeout").splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] in wanted:
            rows.append({"pid": parts[0], "peer_port": parts[1], "timeout": parts[2]})
    return rows


def close_broker_connections(peer_ports: Iterable[int]) -> int:
    """Have the broker close only the connections coming from these local ports; how many."""
    rows = broker_connections(peer_ports)
    for row in rows:
        rabbitmqctl("close_connection", row["pid"], "fault test: closing this connection")
    return len(rows)


def queue_bindings(name: str) -> set[tuple[str, str]]:
    """(exchange, routing key) of every binding of a queue, the default exchange's aside."""
    found = set()
    for line in rabbitmqctl("list_bindings", "source_name", "destination_name",
                            "routing_key").splitlines():
        source, destination, routing_key = line.split("\t")
        if destination == name and source:
            found.add((source, routing_key))
    return found


def unbind_queue(name: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Remove these (exchange, routing key) bindings of a queue."""
    with Connection(AMQP_URL) as connection:
        channel = connection.default_channel
        for exchange, routing_key in pairs:
            channel.queue_unbind(name, exchange, routing_key)


def queue_depth(name: str, ctl: Ctl = rabbitmqctl) -> tuple[int, int]:
    """(ready, unacknowledged) messages of a queue, read from the queue process itself."""
    for line in ctl("list_queues", "name", "messages_ready",
                            "messages_unacknowledged").splitlines():
        parts = line.split("\t")
        if parts[0] == name:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {name} does not exist")


def wait_drained(name: str, timeout: float, publisher: "Publisher | None" = None,
                 ctl: Ctl = rabbitmqctl) -> None:
    """Wait until everything is published, and the queue holds no ready or unacked message."""
    if publisher is not None:
        publisher.join(timeout)
        assert publisher.done, f"the publisher did not finish: {publisher.error!r}"
    wait_for(lambda: queue_depth(name, ctl) == (0, 0), timeout,
             f"queue {name} was not drained: {queue_depth(name, ctl)} (ready, unacked)")


@dataclass(frozen=True)
class Raw:
    """A message with exactly these bytes and content type, good or not."""

    exchange: str
    routing_key: str
    body: bytes
    content_type: str = "application/json"


class Publisher(threading.Thread):
    """Publishes messages in the background at about `rate` a second, each confirmed by the broker."""

    def __init__(self, messages: Sequence[Message | Raw], rate: float, chunk: int = 10,
                 url: str = AMQP_URL) -> None:
        super().__init__(daemon=True)
        self.messages = messages
        self.url = url
        self.rate = rate
        self.chunk = chunk
        self.published = 0
        self.done = False
        self.error: BaseException | None = None

    def run(self) -> None:
        """Publish every message, pacing by chunks; record an error instead of losing it."""
        try:
            with Connection(self.url, transport_options={"confirm_publish": True}) as connection:
                declare_exchanges(connection.default_channel)
                producer = Producer(connection.default_channel)
                started = time.monotonic()
                for item in self.messages:
                    raw = item if isinstance(item, Raw) else Raw(
                        item.exchange, item.routing_key, item.encoded())
                    publish_raw(producer, raw.body, raw.exchange, raw.routing_key, raw.content_type)
                    self.published += 1
                    if self.published % self.chunk == 0:
                        ahead = self.published / self.rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            self.done = True
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            raise


def publish_raw(producer: Producer, body: bytes, exchange: str, routing_key: str,
                content_type: str = "application/json") -> None:
    """Publish one persistent message with exactly these bytes."""
    producer.publish(body, exchange=exchange, routing_key=routing_key, content_type=content_type,
                     content_encoding="utf-8" if content_type.startswith(("application/json", "text/"))
                     else "binary", delivery_mode=2, retry=True)


# -- what Redis should hold -------------------------------------------------------

def events_of(messages: Iterable[Message], provisioner_id: str) -> list[WorkerEvent | PendingEvent]:
    """The events the listener's parser makes of these messages, in order."""
    events = [parse_message(m.exchange, m.routing_key, m.encoded(), utcnow(), (provisioner_id,))
              for m in messages]
    return [event for event in events if isinstance(event, (WorkerEvent, PendingEvent))]


def machine_state(store: Store) -> MachineState:
    """Every machine's lastseen, details (counters, last task) and run history as the store holds
    them, less what may depend on the order runs arrive in: a completed run's peer median (and
    so its peer ratio) is the one known when its resolution is recorded (issue 16 allows it)."""
    return {record.machine_id: (
                record.lastseen,
                {name: value for name, value in record.details.items() if name != "peer_ratios"},
                tuple(run._replace(peer_median_seconds=None)
                      for run in store.machine(record.machine_id).history))
            for record in store.machines()}


def reference_state(messages: Sequence[Message], provisioner_id: str, store: Store,
                    batch: int = 100) -> MachineState:
    """What one uninterrupted, in-order run over the messages leaves, applied to an empty store."""
    assert not list(stored_keys(store)), "the reference store must start empty"
    events = events_of(messages, provisioner_id)
    for start in range(0, len(events), batch):
        store.record(events[start:start + batch], now=utcnow())
    state = machine_state(store)
    assert state, "the reference has no machine: the messages carry no worker event"
    return state


def diff_states(actual: MachineState, expected: MachineState) -> str:
    """A short human account of how two machine states differ."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(m for m in set(actual) & set(expected) if actual[m] != expected[m])
    lines = [f"{len(missing)} missing, {len(extra)} unexpected, {len(changed)} different machines"]
    for machine_id in changed[:3]:
        lines.append(f"  {machine_id}: got {actual[machine_id]}\n    want {expected[machine_id]}")
    return "\n".join(lines)


# -- a Redis of our own ------------------------------------------------------------

def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 that no authority signed, as Heroku Redis serves."""
    certificate, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=30)
    return certificate, key


class RedisServer:
    """A throwaway redis-server on a free loopback port, which a test may stop, kill and restart.

    With `tls=True` it speaks only TLS (rediss://), with a self-signed certificate.
    """

    def __init__(self, *, tls: bool = False) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rh-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls

    @property
    def url(self) -> str:
        """redis:// (or rediss://) URL of the server."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start (or restart, on the same port, empty) and wait until it answers."""
        assert self.process is None or self.process.poll() is not None
        listen = ["--port", str(self.port)]
        if self.tls:
            certificate, key = self_signed_certificate(self.dir)
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(certificate),
                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(certificate),
                      "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(
            ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()

        def answers() -> bool:
            try:
                return bool(client.ping())
            except Exception:
                return False
        wait_for(answers, 10, f"redis-server on port {self.port} did not start")
        client.close()
        return self

    def client(self) -> Any:
        """A client of this server (trusting its certificate, if any)."""
        return open_redis(self.url, timeout=2, tls_verify="none")

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections are refused until start() again; its data is gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        """Kill the server if it runs and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class CuttingProxy:
    """A TCP proxy to a loopback port that cuts each link once the client has sent `cut_after` bytes.

    Cutting closes both sides mid-stream, as a failing network or server would, so the
    server holds a partial request when the link dies.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.forwarded = 0  # bytes from clients that reached the server, over every link
        self._listening = socket.create_server(("127.0.0.1", 0))
        self.port = self._listening.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listening]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str = "redis") -> str:
        """URL of the server through this proxy."""
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listening.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self.cut_after), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[:limit - sent])
                    self.forwarded += limit - sent
                    break
                sink.sendall(data)
                sent += len(data)
                if limit is not None:
                    self.forwarded += len(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)  # wakes the pump reading the other way
            except OSError:
                pass
            end.close()  # unread bytes left: the peer gets a reset, not a stalled write

    def close(self) -> None:
        """Stop accepting and close every link."""
        for sock in self._sockets:
            sock.close()


def publish_all(items: Sequence[Message | Raw], rate: float = 5000, timeout: float = 60,
                url: str = AMQP_URL) -> None:
    """Publish every item, each confirmed, and return once the broker has them all."""
    publisher = Publisher(items, rate, url=url)
    publisher.start()
    publisher.join(timeout)
    assert publisher.done, f"publishing failed: {publisher.error!r}"


def processed(store: Store) -> int:
    """How many messages the listeners have processed, by their own count in Redis."""
    return int(store.listener_status().get("processed", 0))


def procfile_command(process_type: str) -> str:
    """The command of one process type in the Procfile, as Heroku would run it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return command.strip()
    raise AssertionError(f"the Procfile has no {process_type}: line")


class Gunicorn:
    """The Procfile's `web:` command on a free port, reading the given Redis and prefix."""

    def __init__(self, redis_url: str, prefix: str, log_path: Path) -> None:
        self.port = free_port()
        command = procfile_command("web").replace("$PORT", str(self.port))
        env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PORT": str(self.port),
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
        }
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # its own session, so the master and its workers can be ended by their group id
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self) -> None:
        """Wait until /__lbheartbeat__ answers 200."""
        def ready() -> bool:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            try:
                return get(self.port, "/__lbheartbeat__", timeout=2)[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, "gunicorn did not start")

    def stop(self) -> None:
        """SIGTERM the master (gunicorn's graceful stop), then kill the group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def get(port: int, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes, float]:
    """(status, headers, body, seconds) of one GET on a fresh loopback connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                time.monotonic() - started)
    finally:
        connection.close()
