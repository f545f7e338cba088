"""Every Redis key and script of the service, and nothing else.

Layout (each name behind the configured key prefix):
- `machines`          hash  machine id -> lastseen (the proof of concept's index, kept as is)
- `machine_records`   hash  machine id -> JSON of what the machine last did, and its counters
- `runs:<id>`         zset  recent `taskId/runId/state` seen for a machine, to drop redeliveries
- `pending:<queue>`   zset  `taskId/runId` waiting for a worker of `<provisioner>/<workerType>`,
                            scored by the task's deadline
- `claimed:<queue>`   zset  `taskId/runId` already started or resolved (so a late task-pending
                            cannot bring it back), scored by the deadline
- `pending_queues`    set   every `<queue>` that ever had a pending task
- `listener`          hash  the listener's heartbeat and counters
- `inventory`         hash  machine id -> worker type ("" for none): the machines that should
                            exist; absent when no inventory is loaded
- `version`           int   bumped by every write that changed machine data (for ETags)

Writes go through Lua scripts, so each batch is atomic and two listeners on
one queue cannot interleave a read-compare-write. Loads (preload, and any other
bulk write) go through `Store._all_or_nothing`: one MULTI/EXEC that Redis applies
whole or not at all, even when the link or the server fails in the middle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

import orjson
import redis

from .events import PendingEvent, WorkerEvent
from .times import epoch_seconds, format_lastseen

# How many recent runs per machine are remembered to recognise a redelivery.
# 128 keeps each set in Redis' compact encoding; a redelivery arrives within
# minutes, while 128 runs take a busy machine about a day.
DEDUP_WINDOW = 128
# A load whose watched keys keep changing under it, or whose link keeps breaking, gives up
# after this many attempts.
WATCH_ATTEMPTS = 5
LISTENER_COUNTERS = ("processed", "written", "skipped", "malformed", "duplicate", "ignored")

_RECORD_BATCH = r"""
local machines, records, stats = KEYS[1], KEYS[2], KEYS[3]
local prefix, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local written, duplicates, ignored, newest = 0, 0, 0, ''
local touched = {}
local rank = {running = '0', completed = '1', failed = '1', exception = '1'}
local function order(seen, state, task_id, run_id)
  return seen .. '|' .. rank[state] .. '|' .. task_id .. '|' .. run_id
end
-- the batch is one JSON argument: cheaper to send and to unpack than thousands of ARGV
for _, item in ipairs(cjson.decode(ARGV[8])) do
  local kind = item[1]
  if kind == 'w' then
    local id, seen, score = item[2], item[3], item[4]
    local provisioner, worker_type = item[5], item[6]
    local task_id, run_id, state = item[7], item[8], item[9]
    local reason, deadline = item[10], item[11]
    local runs = prefix .. 'runs:' .. id
    local member = task_id .. '/' .. run_id .. '/' .. state
    local fresh = redis.call('ZADD', runs, 'NX', score, member)
    if fresh == 1 then
      local size = redis.call('ZCARD', runs)
      if size > window then
        redis.call('ZREMRANGEBYRANK', runs, 0, size - window - 1)
        -- older than everything remembered: it may have been counted already
        if not redis.call('ZSCORE', runs, member) then fresh = 0 end
      end
    end
    if fresh == 0 then
      duplicates = duplicates + 1
    else
      written = written + 1
      local current = redis.call('HGET', machines, id)
      if (not current) or seen > current then redis.call('HSET', machines, id, seen) end
      local raw = redis.call('HGET', records, id)
      local rec
      if raw then rec = cjson.decode(raw) else rec = {completed = 0, failed = 0, exception = 0} end
      if (not rec.firstseen) or seen < rec.firstseen then rec.firstseen = seen end
      if (not rec.task_id) or order(seen, state, task_id, run_id)
          > order(rec.task_time, rec.state, rec.task_id, tostring(rec.run_id)) then
        rec.provisioner, rec.worker_type = provisioner, worker_type
        rec.task_id, rec.run_id, rec.state, rec.task_time = task_id, tonumber(run_id), state, seen
        if reason ~= '' then rec.reason_resolved = reason else rec.reason_resolved = nil end
      end
      if state ~= 'running' then rec[state] = (rec[state] or 0) + 1 end
      redis.call('HSET', records, id, cjson.encode(rec))
      if seen > newest then newest = seen end
      if deadline ~= '' then
        local queue = provisioner .. '/' .. worker_type
        local task_run = task_id .. '/' .. run_id
        redis.call('ZREM', prefix .. 'pending:' .. queue, task_run)
        redis.call('ZADD', prefix .. 'claimed:' .. queue, deadline, task_run)
        touched[queue] = touched[queue] or 'claimed'
      end
    end
  elseif kind == 'p' then
    local queue, task_run, deadline = item[2], item[3], item[4]
    if tonumber(deadline) > now and not redis.call('ZSCORE', prefix .. 'claimed:' .. queue, task_run) then
      if redis.call('ZADD', prefix .. 'pending:' .. queue, deadline, task_run) == 1 then
        written = written + 1
      else
        duplicates = duplicates + 1
      end
      touched[queue] = 'pending'
    else
      -- already started, resolved or past its deadline: a late or stale task-pending
      ignored = ignored + 1
    end
  else
    return redis.error_reply('unknown record kind ' .. tostring(kind))
  end
end
for queue, why in pairs(touched) do
  if why == 'pending' then redis.call('SADD', prefix .. 'pending_queues', queue) end
  redis.call('ZREMRANGEBYSCORE', prefix .. 'pending:' .. queue, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', prefix .. 'claimed:' .. queue, '-inf', now)
end
redis.call('HINCRBY', stats, 'processed', ARGV[4])
redis.call('HINCRBY', stats, 'skipped', ARGV[5])
redis.call('HINCRBY', stats, 'malformed', ARGV[6])
redis.call('HINCRBY', stats, 'written', written)
redis.call('HINCRBY', stats, 'duplicate', duplicates)
redis.call('HINCRBY', stats, 'ignored', ignored)
redis.call('HSET', stats, 'last_message_at', ARGV[7])
if written > 0 then redis.call('INCR', prefix .. 'version') end
if newest ~= '' then
  local known = redis.call('HGET', stats, 'newest_event_at')
  if (not known) or newest > known then redis.call('HSET', stats, 'newest_event_at', newest) end
end
return {written, duplicates, ignored}
"""

_PRELOAD = r"""
local written, kept = 0, 0
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or ARGV[i + 1] > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
  else
    kept = kept + 1
  end
end
if written > 0 then redis.call('INCR', KEYS[2]) end
return {written, kept}
"""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch changed."""

    written: int
    duplicates: int
    ignored: int = 0


class MachineRecord(NamedTuple):
    """One machine as stored: its lastseen and, when known, what it last did.

    A NamedTuple, not a frozen dataclass: /machines builds ten thousand per request.
    """

    machine_id: str
    lastseen: str
    details: Mapping[str, Any]


def open_redis(url: str, timeout: float = 3.0, *, tls_verify: str = "required") -> redis.Redis:
    """A client whose every call fails within `timeout` seconds instead of hanging.

    `tls_verify` is how a rediss:// server's certificate is checked: "required", or
    "none" for a self-signed one (Heroku Redis); a redis:// URL has no certificate.
    """
    tls = {"ssl_cert_reqs": tls_verify} if urlsplit(url).scheme == "rediss" else {}
    return redis.Redis.from_url(
        url,
        **tls,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # RESP2 explicitly: redis-py 8 would otherwise negotiate RESP3.
        protocol=2,
    )


def load_failure(exc: redis.RedisError) -> str:
    """What a load that failed with `exc` left in Redis, in words for the operator."""
    if isinstance(exc, redis.ResponseError):
        return f"refused the load, nothing written: {exc}"
    # the link broke: EXEC may have run before its answer was lost
    return (f"failed during the load: {exc} -- it was applied whole or not at all; "
            "run it again (loading twice changes nothing)")


class Store:
    """Reads and writes the service's data in one Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.redis = client
        self.prefix = prefix
        self.machines_key = prefix + "machines"
        self.records_key = prefix + "machine_records"
        self.listener_key = prefix + "listener"
        self.pending_queues_key = prefix + "pending_queues"
        self.version_key = prefix + "version"
        self.inventory_key = prefix + "inventory"
        self._record_batch = client.register_script(_RECORD_BATCH)
        self._preload = client.register_script(_PRELOAD)

    # -- writes -------------------------------------------------------------

    def record(
        self,
        events: Sequence[WorkerEvent | PendingEvent],
        *,
        now: datetime,
        received_at: datetime | None = None,
        processed: int | None = None,
        skipped: int = 0,
        malformed: int = 0,
    ) -> BatchResult:
        """Apply a batch atomically: lastseen only moves forward, redeliveries count once."""
        items: list[tuple] = []
        for event in events:
            # numbers travel as strings: Lua would print a float score with too few digits
            if isinstance(event, WorkerEvent):
                items.append((
                    "w", event.machine_id, format_lastseen(event.lastseen),
                    repr(epoch_seconds(event.lastseen)), event.provisioner_id, event.worker_type,
                    event.task_id, str(event.run_id), event.state, event.reason_resolved or "",
                    "" if event.deadline is None else repr(epoch_seconds(event.deadline)),
                ))
            else:
                items.append(("p", f"{event.provisioner_id}/{event.worker_type}",
                              f"{event.task_id}/{event.run_id}", repr(epoch_seconds(event.deadline))))
        args = [
            self.prefix, epoch_seconds(now), DEDUP_WINDOW,
            len(events) + skipped + malformed if processed is None else processed,
            skipped, malformed, format_lastseen(received_at or now), orjson.dumps(items),
        ]
        written, duplicates, ignored = self._record_batch(
            keys=[self.machines_key, self.records_key, self.listener_key], args=args)
        return BatchResult(int(written), int(duplicates), int(ignored))

    def preload(self, lastseen_by_machine: Mapping[str, datetime], chunk: int = 5000) -> tuple[int, int]:
        """Raise each machine's lastseen to the given one; (written, kept because newer)."""
        items = [(machine_id, format_lastseen(moment))
                 for machine_id, moment in lastseen_by_machine.items()]

        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(items), chunk):
                args = [value for pair in items[start:start + chunk] for value in pair]
                self._preload(keys=[self.machines_key, self.version_key], args=args, client=pipe)
        written = kept = 0
        for chunk_written, chunk_kept in self._all_or_nothing(queue_writes):
            written, kept = written + int(chunk_written), kept + int(chunk_kept)
        return written, kept

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
                        pipe.watch(*watched)
                    queue_writes(pipe)
                    return pipe.execute()
                except redis.WatchError:
                    if attempt == WATCH_ATTEMPTS:
                        raise
                    attempt += 1

    def update_inventory(
        self, decide: Callable[[dict[str, str | None]], Mapping[str, str | None] | None],
        chunk: int = 5000,
    ) -> None:
        """Replace the inventory with decide(current inventory) in one transaction.

        decide returns the whole new inventory, or None to write nothing; it may raise
        to refuse. It runs again if another load changes the inventory meanwhile, so the
        web sees the old inventory or the new one, never a mix.
        """
        def apply(pipe: Any) -> None:
            current = _inventory(pipe.hgetall(self.inventory_key))
            after = decide(current)
            if after is None or after == current:
                return
            items = [(machine_id, worker_type or "") for machine_id, worker_type in after.items()]
            pipe.multi()
            pipe.delete(self.inventory_key)
            for start in range(0, len(items), chunk):
                pipe.hset(self.inventory_key, mapping=dict(items[start:start + chunk]))
            pipe.incr(self.version_key)
        self._all_or_nothing(apply, self.inventory_key)

    def listener_connected(self, now: datetime, queue: str) -> None:
        """Note that a listener (re)connected to its queue."""
        self.redis.hset(self.listener_key, mapping={
            "last_connected_at": format_lastseen(now), "queue": queue,
            "heartbeat_at": format_lastseen(now)})

    def listener_heartbeat(self, now: datetime) -> None:
        """Note that a listener is alive, even when no message arrives."""
        self.redis.hset(self.listener_key, "heartbeat_at", format_lastseen(now))

    # -- reads --------------------------------------------------------------

    def machines(self) -> list[MachineRecord]:
        """Every machine ever seen, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.machines_key)
        pipe.hgetall(self.records_key)
        lastseen_by_id, raw_records = pipe.execute()
        loads = orjson.loads
        return [
            MachineRecord(machine_id, lastseen,
                          loads(raw_records[machine_id]) if machine_id in raw_records else {})
            for machine_id, lastseen in lastseen_by_id.items()
        ]

    def inventory(self) -> dict[str, str | None]:
        """The machines that should exist: id -> worker type or None; empty when none is loaded."""
        return _inventory(self.redis.hgetall(self.inventory_key))

    def data_version(self) -> int:
        """A number that changes whenever machine data changes; read it before the data."""
        return int(self.redis.get(self.version_key) or 0)

    def machine(self, machine_id: str) -> MachineRecord | None:
        """One machine, or None when it was never seen."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.machines_key, machine_id)
        pipe.hget(self.records_key, machine_id)
        lastseen, raw = pipe.execute()
        if lastseen is None:
            return None
        return MachineRecord(machine_id, lastseen, orjson.loads(raw) if raw else {})

    def machine_ids_for_hostname(self, hostname: str) -> list[str]:
        """Every `$DC:hostname` id seen for a hostname (several when datacenters share one)."""
        return sorted(machine_id for machine_id, _ in self.redis.hscan_iter(
            self.machines_key, match=f"*:{hostname}", count=1000))

    def pending_counts(self, now: datetime) -> dict[str, int]:
        """Tasks waiting per `<provisioner>/<workerType>`, ignoring those past their deadline."""
        queues = sorted(self.redis.smembers(self.pending_queues_key))
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zcount(self.prefix + "pending:" + queue, f"({epoch_seconds(now)}", "+inf")
        return dict(zip(queues, (int(count) for count in pipe.execute())))

    def listener_status(self) -> dict[str, str]:
        """The listener's heartbeat and counters, as stored."""
        return self.redis.hgetall(self.listener_key)

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())

    def all_keys(self) -> Iterable[str]:
        """Every key under this store's prefix (for tests and clean-up)."""
        return self.redis.scan_iter(match=self.prefix + "*", count=1000)


def _inventory(stored: Mapping[str, str]) -> dict[str, str | None]:
    # "" stands for "no worker type": a worker type is never empty
    return {machine_id: worker_type or None for machine_id, worker_type in stored.items()}
