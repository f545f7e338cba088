"""What every part of the store shares: the Redis client and its key names, the settings a
part's scripts need, script registration, the all-or-nothing load, and the Redis failures.

Writes go through Lua scripts, so each batch is atomic and two listeners on one queue cannot
interleave a read-compare-write. Loads (preload, and any other bulk write) go through
`StorePart._all_or_nothing`: one MULTI/EXEC that Redis applies whole or not at all, even when
the link or the server fails in the middle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ClassVar, Mapping, Self, Sequence
from urllib.parse import urlsplit

import orjson
import redis

from . import peers
from .keys import Keys
from ..core.config import WINDOW, Config
from ..core.records import MachineRecord, RecordDetails
from ..core.times import epoch_seconds

# A load whose watched keys keep changing under it, or whose link keeps breaking, gives up
# after this many attempts.
WATCH_ATTEMPTS = 5
# Ended runs the problem rules need per machine (config.WINDOW), and a few
# more so that runs still running or resolved by the queue for outside reasons
# do not push the oldest counted ones out.
HISTORY_SLACK = 8
# Config declares PEER_WINDOW's and PEER_FAILURES' defaults, for a store made without them.
_DEFAULTS = Config()

# Every Redis failure: the data store's fault, never the request's or the message's.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
# The failures that pass by themselves: a lost link, a timeout, a server still loading.
_PASSING_OUTAGES = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# Redis refusing writes while it still serves reads: memory full (maxmemory), a read-only replica.
WRITES_REFUSED: tuple[type[Exception], ...] = (redis.OutOfMemoryError, redis.ReadOnlyError)


def is_passing_outage(exc: BaseException) -> bool:
    """Whether a Redis failure passes by itself (retry, warn) rather than needs an operator.

    READONLY after a failover, OOM, NOPERM or a wrong password need one: an error, not a warning.
    """
    # redis-py makes NOAUTH and WRONGPASS connection errors, but no retry mends a wrong password
    return isinstance(exc, _PASSING_OUTAGES) and not isinstance(exc, redis.AuthenticationError)


def open_redis(url: str, timeout: float = 3.0, *, tls_verify: str = "required") -> redis.Redis:
    """A client whose every call fails within `timeout` seconds instead of hanging.

    `tls_verify` is how a rediss:// server's certificate is checked: "required", or
    "none" for a self-signed one (Heroku Redis); a redis:// URL has no certificate.
    """
    tls = {"ssl_cert_reqs": tls_verify} if urlsplit(url).scheme == "rediss" else {}
    client: redis.Redis = redis.Redis.from_url(
        url,
        **tls,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # RESP2 explicitly: redis-py 8 would otherwise negotiate RESP3.
        protocol=2,
    )
    return client


def load_failure(exc: redis.RedisError) -> str:
    """What a load that failed with `exc` left in Redis, in words for the operator."""
    if isinstance(exc, redis.ResponseError):
        return f"refused the load, nothing written: {exc}"
    # the link broke: EXEC may have run before its answer was lost
    return (f"failed during the load: {exc} -- it was applied whole or not at all; "
            "run it again (loading twice changes nothing)")


def pending_after(now: datetime) -> str:
    """The rule of the work waiting: a pending task waits while its deadline is after `now`.
    As ZCOUNT's lower bound, in Python's counts and the read scripts' (lua/pending_counts.lua)."""
    return f"({epoch_seconds(now)}"


def decode_details(raw: str | None) -> RecordDetails:
    """A machine's stored record (machine_records), decoded; {} when it has none."""
    if not raw:
        return {}
    details: RecordDetails = orjson.loads(raw)
    return details


def decode_record(machine_id: str, lastseen: str | None, raw: str | None) -> MachineRecord:
    """A machine as `machines` and `machine_records` hold it, without its history."""
    return MachineRecord(machine_id, lastseen, decode_details(raw))


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A hash as a script returns it (field, value, ...) as a dict."""
    items = iter(flat)
    return dict(zip(items, items, strict=True))


class StorePart:
    """One part of the store over one Redis client: the keys under its prefix, the settings its
    scripts need, and its scripts (SCRIPTS: attribute name -> script source), registered once."""

    SCRIPTS: ClassVar[Mapping[str, str]] = {}

    def __init__(self, client: redis.Redis, prefix: str = "", *, recent_tasks: int = WINDOW,
                 peer_window: float = _DEFAULTS.peer_window,
                 peer_failures: int = _DEFAULTS.peer_failures) -> None:
        # decode_responses=True (see open_redis): replies are str, which redis-py's types,
        # bytes | str, cannot tell; the reads say so to mypy
        self.redis = client
        self.prefix = prefix
        self.peer_window = peer_window
        # the batch script's peer settings: the same for every batch
        self._peer_settings = orjson.dumps({
            "window": int(peer_window * 1000), "failures": peer_failures,
            "runs": peers.LABEL_RUNS, "judged": WINDOW})
        # every key name of the store: keys.Keys, the one place one is spelt
        self.keys = Keys(prefix)
        # runs kept per machine: what /machines/<id> shows and what the rules need
        self.history_size = max(recent_tasks, WINDOW) + HISTORY_SLACK
        # every part's scripts, whichever parts this class is made of
        for part in reversed(type(self).__mro__):
            for name, source in vars(part).get("SCRIPTS", {}).items():
                setattr(self, name, client.register_script(source))

    @classmethod
    def from_config(cls, config: Config, client: redis.Redis) -> Self:
        """The store of `config`'s key prefix and settings over `client`."""
        return cls(client, config.redis_key_prefix, recent_tasks=config.recent_tasks,
                   peer_window=config.peer_window, peer_failures=config.peer_failures)

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())

    def _all_or_nothing(self, queue_writes: Callable[[Any], None], *watched: str) -> list[Any]:
        """Run the writes `queue_writes` puts after `pipe.multi()` as one MULTI/EXEC; their replies.

        Redis runs nothing of a transaction before it has read EXEC, drops it when the
        link breaks before that, and refuses it whole (EXECABORT) when a command cannot
        be queued, e.g. out of memory: a load is applied whole or not at all
        (tests/integration/test_atomic_loads.py cuts the link mid-load). What a transaction
        cannot undo is a command failing while EXEC runs, so validate everything first,
        and let scripts check before their first write. redis-py sends the whole
        transaction again after a broken link, so a load must be idempotent. `queue_writes`
        may read before `pipe.multi()`; `watched` keys changed meanwhile make it run again.
        """
        # redis.Redis.transaction would retry forever, and redis-py reports a link broken while
        # watching as a WatchError too: a link that breaks every time must end in an error
        with self.redis.pipeline(transaction=True) as pipe:
            attempt = 1
            while True:
                try:
                    if watched:
                        # redis-py leaves Pipeline.watch unannotated
                        pipe.watch(*watched)  # type: ignore[no-untyped-call]
                    queue_writes(pipe)
                    replies: list[Any] = pipe.execute()
                    return replies
                except redis.WatchError:
                    if attempt == WATCH_ATTEMPTS:
                        raise
                    attempt += 1

