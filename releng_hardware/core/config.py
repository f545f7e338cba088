"""Settings, parsed once from the environment (or any mapping) into one object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote, unquote, urlsplit

from .identifiers import is_identifier
from .times import parse_duration


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


_Number = TypeVar("_Number", int, float)

# How a rediss:// server's certificate is checked: redis-py's ssl_cert_reqs values.
TLS_VERIFY_MODES = ("required", "none")


def _above_zero(parse: Callable[[str], _Number], message: str) -> Callable[[str], _Number]:
    """A parser like `parse` that refuses zero and below with `message`."""
    def parse_above_zero(text: str) -> _Number:
        value = parse(text)
        if value <= 0:
            raise ValueError(message)
        return value
    return parse_above_zero


_positive_int = _above_zero(int, "must be a positive whole number")


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return value


def _provisioners(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("needs at least one provisioner id")
    for name in names:
        if not is_identifier(name):
            raise ValueError(f"{name!r} is not a Taskcluster identifier")
    return names


def _redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return _with_valid_port(text)


def _with_valid_port(url: str) -> str:
    # a bad port would otherwise fail later, in a client that may print the whole URL
    try:
        urlsplit(url).port  # noqa: B018 -- reading it parses the port
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return url


def _tls_verify(text: str) -> str:
    value = text.strip().lower()
    if value not in TLS_VERIFY_MODES:
        raise ValueError(f"{text!r} is not one of {', '.join(TLS_VERIFY_MODES)}")
    return value


def _amqp_url(text: str) -> str:
    if urlsplit(text).scheme not in ("amqp", "amqps"):
        raise ValueError("must start with amqp:// or amqps://")
    return _with_valid_port(text)


def _root_url(text: str) -> str:
    if urlsplit(text).scheme not in ("http", "https"):
        raise ValueError("must be an http(s) URL")
    return text.rstrip("/")


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return value


_duration = _above_zero(parse_duration, "must be longer than zero")


def _factor(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number larger than zero")
    return value


def _duration_or_zero(text: str) -> float:
    return parse_duration(text)


MIN_LISTENER_WATCHDOG = 30.0
# How many of a machine's newest runs the problem rules judge: Mozilla's fleet tools judge a
# machine on its last 20 tasks. Declared here, below problems, so the settings' docs say it too.
WINDOW = 20
# A machine is judged slow on this many completed runs with a peer ratio at least (of WINDOW).
SLOW_MIN_RUNS = 5


def _setting(env: str, default: Any, parse: Callable[[str], Any], doc: str,
             shown: str | None = None) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc, "shown": shown})


@dataclass(frozen=True)
class Config:
    """Every setting of the web app, the listener, preload and the simulator."""

    redis_url: str = _setting(
        "REDIS_URL", "redis://localhost:6379/0", _redis_url, "Redis to write and read")
    redis_key_prefix: str = _setting(
        "REDIS_KEY_PREFIX", "", str, "prefix of every Redis key (for sharing one Redis)")
    redis_timeout: float = _setting(
        "REDIS_TIMEOUT", 3.0, _duration, "how long a Redis call may take before it counts as failed",
        "3s")
    redis_tls_verify: str = _setting(
        "REDIS_TLS_VERIFY", "required", _tls_verify,
        "certificate check of a rediss:// Redis: required, or none for Heroku Redis "
        "(its certificate is self-signed; Heroku recommends none)")
    pulse_url: str | None = _setting(
        "PULSE_URL", None, _amqp_url,
        "full AMQP URL of the broker; wins over AMQP_USER/AMQP_PASS when set")
    amqp_user: str | None = _setting("AMQP_USER", None, str, "Pulse user name")
    amqp_pass: str | None = _setting("AMQP_PASS", None, str, "Pulse password")
    pulse_host: str = _setting("PULSE_HOST", "pulse.mozilla.org", str, "Pulse host (TLS, port 5671)")
    pulse_queue_name: str = _setting(
        "PULSE_QUEUE_NAME", "releng-hardware", str,
        "the listener's queue is queue/<user>/<PULSE_QUEUE_NAME>")
    provisioner_ids: tuple[str, ...] = _setting(
        "PROVISIONER_IDS", ("releng-hardware",), _provisioners,
        "comma-separated Taskcluster provisioners to follow")
    port: int = _setting("PORT", 8080, _port, "web port")
    prefetch: int = _setting(
        "PULSE_PREFETCH", 1000, _positive_int,
        "most unacknowledged messages the listener holds (Pulse counts them too)")
    batch_size: int = _setting(
        "BATCH_SIZE", 250, _positive_int, "messages written to Redis and acked together")
    batch_max_age: float = _setting(
        "BATCH_MAX_AGE", 0.25, _duration, "how long a message may wait for its batch", "0.25s")
    amqp_heartbeat: float = _setting(
        "AMQP_HEARTBEAT", 60.0, _duration, "AMQP heartbeat interval", "60s")
    listener_watchdog: float = _setting(
        "LISTENER_WATCHDOG", 180.0, _duration,
        "the listener exits (non-zero, for the platform to restart it) when its consume loop "
        "makes no progress for this long; at least 30s", "3m")
    stale_after: float = _setting(
        "STALE_AFTER", 6 * 3600.0, _duration, "a machine not seen for this long is stale", "6h")
    listener_stale_after: float = _setting(
        "LISTENER_STALE_AFTER", 300.0, _duration,
        "/__heartbeat__ fails when the listener has been silent this long", "5m")
    backlog_warning: int = _setting(
        "BACKLOG_WARNING", 5000, _positive_int,
        "the listener warns at start when its queue holds more messages than this")
    claim_timeout: float = _setting(
        "CLAIM_TIMEOUT", 1200.0, _duration,
        "the queue's claim timeout: a run the queue resolved itself shows the machine alive "
        "until its last claim ran out less this", "20m")
    recent_tasks: int = _setting(
        "RECENT_TASKS", 20, _positive_int, "runs shown per machine in /machines/<id>")
    failure_streak: int = _setting(
        "FAILURE_STREAK", 3, _positive_int,
        "this many newest counted runs all failed or exception is a consecutive_failures problem")
    success_rate_min: float = _setting(
        "SUCCESS_RATE_MIN", 0.85, _share,
        f"a success rate below this over the newest {WINDOW} completed or failed runs is a "
        "low_success_rate problem")
    exceptions_max: int = _setting(
        "EXCEPTIONS_MAX", 3, _positive_int,
        f"this many exceptions among the newest {WINDOW} counted runs is an exceptions problem")
    hung_after: float = _setting(
        "HUNG_AFTER", 3 * 3600.0, _duration,
        "a newest run running longer than this is a hung_task problem", "3h")
    peer_window: float = _setting(
        "PEER_WINDOW", 24 * 3600.0, _duration,
        "runs of a task label on other machines this long before or after a run are its peers",
        "24h")
    peer_failures: int = _setting(
        "PEER_FAILURES", 2, _positive_int,
        "a failure is the task's, not the machine's (the rules skip it), when this many other "
        "machines failed a peer run; /labels lists labels failing on more machines than this")
    slow_factor: float = _setting(
        "SLOW_FACTOR", 1.5, _factor,
        f"a machine whose completed runs take this many times their peers' median (the median "
        f"ratio, over at least {SLOW_MIN_RUNS} of its newest {WINDOW}) is a slow problem")
    retention: float = _setting(
        "RETENTION", 30 * 86400.0, _duration_or_zero,
        "machines not seen for this long are removed with their history, unless in the "
        "inventory; 0 keeps them forever", "30d")
    taskcluster_root_url: str = _setting(
        "TASKCLUSTER_ROOT_URL", "https://firefox-ci-tc.services.mozilla.com", _root_url,
        "Taskcluster deployment that task links point to")
    log_level: str = _setting("LOG_LEVEL", "INFO", str.upper, "log level of every process")
    taskcluster_poll: float = _setting(
        "TASKCLUSTER_POLL", 300.0, _duration_or_zero,
        "how often a listener reads the quarantined workers from Taskcluster (one listener "
        "polls per round); 0 turns it off", "5m")
    quarantine_max: int = _setting(
        "QUARANTINE_MAX", 5, _positive_int,
        "most machines one releng-hardware quarantine or lift changes without --force")

    def __post_init__(self) -> None:
        if self.prefetch <= self.batch_size:
            raise ConfigError(
                f"PULSE_PREFETCH ({self.prefetch}) must be larger than BATCH_SIZE ({self.batch_size})")
        if self.listener_watchdog < MIN_LISTENER_WATCHDOG:
            # a broker connection attempt alone may legitimately take 20s
            raise ConfigError(f"LISTENER_WATCHDOG ({self.listener_watchdog:g}s) must be at least "
                              f"{MIN_LISTENER_WATCHDOG:g}s")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Config":
        """Build the settings from a mapping; ConfigError names the first bad one."""
        values: dict[str, Any] = {}
        for setting in fields(cls):
            raw = environ.get(setting.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[setting.name] = setting.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{setting.metadata['env']}: {exc}") from None
        return cls(**values)

    @property
    def amqp_url(self) -> str:
        """The broker URL: PULSE_URL, or Pulse over TLS with AMQP_USER/AMQP_PASS."""
        if self.pulse_url:
            return self.pulse_url
        if not (self.amqp_user and self.amqp_pass):
            raise ConfigError("set PULSE_URL, or both AMQP_USER and AMQP_PASS, to reach Pulse")
        user, password = quote(self.amqp_user, safe=""), quote(self.amqp_pass, safe="")
        return f"amqps://{user}:{password}@{self.pulse_host}:5671/"

    @property
    def amqp_user_name(self) -> str:
        """The broker user, which Pulse requires in queue names."""
        user = urlsplit(self.amqp_url).username
        return unquote(user) if user else "guest"

    @property
    def queue_name(self) -> str:
        """Pulse's rule: a client's queues are named queue/<user>/<name>."""
        return f"queue/{self.amqp_user_name}/{self.pulse_queue_name}"


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, as the README lists them."""
    rows = []
    for setting in fields(Config):
        default = setting.metadata["shown"] or setting.default
        if isinstance(default, tuple):
            default = ",".join(default)
        rows.append((setting.metadata["env"], "" if default is None else str(default),
                     setting.metadata["doc"]))
    return rows


def mask_url(url: str) -> str:
    """The URL with its password, and query values that may be secrets, replaced by ***.

    Fit for logs and errors; never raises, whatever the URL.
    """
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    netloc = f"{user}:***@{host}" if colon else parts.netloc
    query = "&".join(
        f"{name}=***" if _SECRET_NAME.search(name) else f"{name}{equals}{value}"
        for name, equals, value in (pair.partition("=") for pair in parts.query.split("&") if pair))
    # replaced in place: urlunsplit would drop the empty host of unix:///path
    masked = url.replace(parts.netloc, netloc, 1) if netloc != parts.netloc else url
    return masked.replace(f"?{parts.query}", f"?{query}", 1) if query != parts.query else masked


# query parameters that carry credentials (redis-py reads ?password=, brokers ?token=)
_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)
