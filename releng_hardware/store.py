"""Every Redis key and script of the service, and nothing else.

Layout (each name behind the configured key prefix):
- `machines`          hash  machine id -> lastseen (the proof of concept's index, kept as is)
- `machine_records`   hash  machine id -> JSON of what the machine last did, its counters and
                            `outcomes` (its ended runs newest first, one problems.outcome_code
                            each: what the problem rules read, so /machines decodes no history)
- `machine_history`   hash  machine id -> its newest runs, one HISTORY_ENTRY per line, newest
                            first; read only for one machine; a run older than everything a full
                            history keeps counts as a redelivery
- `runs:<id>`         zset  written by versions before the history: recent `taskId/runId/state`;
                            still consulted for redeliveries, trimmed as the history covers it
- `pending:<queue>`   zset  `taskId/runId` waiting for a worker of `<provisioner>/<workerType>`,
                            scored by the task's deadline
- `claimed:<queue>`   zset  `taskId/runId` already started or resolved (so a late task-pending
                            cannot bring it back), scored by the deadline
- `pending_queues`    set   every `<queue>` that ever had a pending task
- `listener`          hash  the listener's heartbeat and counters
- `inventory`         hash  machine id -> worker type ("" for none): the machines that should
                            exist; absent when no inventory is loaded
- `version`           int   bumped by every write that changed machine data (for ETags)
- `retention_cursor`  str   where the sweep for machines past RETENTION goes on in `machines`
                            (an HSCAN cursor shared by every listener)
- `quarantine`        hash  machine id -> JSON {"until", "reason", "by", "queue"}: Taskcluster's
                            quarantines (times in the lastseen format), replaced per
                            `<provisioner>/<workerType>` after each complete poll of it
- `taskcluster`       hash  the Taskcluster poll's status: last_good_poll_at, last_poll_at,
                            consecutive_failures, polls, failures, last_error, last_error_at
- `taskcluster_turn`  str   whose turn it is to poll Taskcluster: SET NX with an expiry a little
                            under TASKCLUSTER_POLL, never released, so whichever listener takes
                            it polls and the others skip that round (they take turns)

A machine known only from a backfill has `"source": "taskcluster"` in its record until the
listener writes a run of it.

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
from .problems import (COMPLETED, EXCEPTION, FAILED, LOST, LOST_REASON, NOT_COUNTED, RUNNING, WINDOW,
                       outcome_code, state_of_outcome)
from .times import epoch_milliseconds, epoch_seconds, format_lastseen, from_epoch_milliseconds

# A load whose watched keys keep changing under it, or whose link keeps breaking, gives up
# after this many attempts.
WATCH_ATTEMPTS = 5
# Ended runs the problem rules need per machine (problems.WINDOW), and a few
# more so that runs still running or resolved by the queue for outside reasons
# do not push the oldest counted ones out.
HISTORY_SLACK = 8
LISTENER_COUNTERS = ("processed", "written", "skipped", "malformed", "duplicate", "ignored")

_RECORD_BATCH = r"""
local machines, records, stats, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local written, duplicates, ignored, newest = 0, 0, 0, ''
local touched, recs, hists, changed = {}, {}, {}, {}
local rank = {running = '0', completed = '1', failed = '1', exception = '1'}
local function order(seen, state, task_id, run_id)
  return seen .. '|' .. rank[state] .. '|' .. task_id .. '|' .. run_id
end
-- A history entry is one fixed-width string (see HISTORY_ENTRY) whose first 40
-- characters sort it: a greater entry is a newer run. A history is its entries,
-- newest first, joined by newlines: string work only, no decoding per write.
-- the batch is one JSON argument: cheaper to send and to unpack than thousands of ARGV
for _, item in ipairs(cjson.decode(ARGV[8])) do
  local kind = item[1]
  if kind == 'w' then
    local id, seen, first, event_time = item[2], item[3], item[4], item[5]
    local provisioner, worker_type = item[6], item[7]
    local task_id, run_id, state = item[8], item[9], item[10]
    local reason, deadline, code = item[11], item[12], item[13]
    local entry, run_key = item[14], string.sub(item[14], 15, 40)
    local rec = recs[id]
    if not rec then
      local raw = redis.call('HGET', records, id)
      if raw then
        rec = cjson.decode(raw)
        -- written before the history existed: its run set still knows older redeliveries
        if not rec.outcomes then rec.legacy_runs = 1 end
      else
        rec = {completed = 0, failed = 0, exception = 0}
      end
      recs[id] = rec
      local runs = {}
      for run in string.gmatch(redis.call('HGET', history, id) or '', '[^\n]+') do
        runs[#runs + 1] = run
      end
      hists[id] = runs
    end
    local runs = hists[id]
    local fresh, at = true, nil
    for i, run in ipairs(runs) do
      -- a plain find anchored at the run key's place: no substring made per entry
      if string.find(run, run_key, 15, true) == 15 then at = i break end
    end
    if at then
      -- only a resolution replaces a running entry: anything else is a redelivery
      fresh = string.sub(runs[at], 41, 41) == 'r' and code ~= 'r'
      if fresh then
        if string.sub(entry, 42, 54) == '0000000000000' then
          entry = string.sub(entry, 1, 41) .. string.sub(runs[at], 42, 54) .. string.sub(entry, 55)
        end
        table.remove(runs, at)
      end
    elseif #runs >= keep and runs[#runs] > entry then
      -- older than everything a full history keeps: it may have been counted already
      fresh = false
    elseif rec.legacy_runs and redis.call('ZSCORE', prefix .. 'runs:' .. id,
        task_id .. '/' .. run_id .. '/' .. state) then
      fresh = false
    end
    if not fresh then
      duplicates = duplicates + 1
    else
      written = written + 1
      changed[id] = true
      rec.source = nil  -- seen by the listener now, not only by a backfill
      -- runs mostly come newest: the place is found near the front
      local place = 1
      while runs[place] and runs[place] > entry do place = place + 1 end
      table.insert(runs, place, entry)
      while #runs > keep do runs[#runs] = nil end
      local current = redis.call('HGET', machines, id)
      if (not current) or seen > current then redis.call('HSET', machines, id, seen) end
      if (not rec.firstseen) or first < rec.firstseen then rec.firstseen = first end
      if (not rec.task_id) or order(event_time, state, task_id, run_id)
          > order(rec.task_time, rec.state, rec.task_id, tostring(rec.run_id)) then
        rec.provisioner, rec.worker_type = provisioner, worker_type
        rec.task_id, rec.run_id, rec.state, rec.task_time = task_id, tonumber(run_id), state, event_time
        if reason ~= '' then rec.reason_resolved = reason else rec.reason_resolved = nil end
      end
      if state ~= 'running' then rec[state] = (rec[state] or 0) + 1 end
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
for id in pairs(changed) do
  local rec, runs = recs[id], hists[id]
  -- what the problem rules read with every machine, so no request decodes histories
  local outcomes = {}
  for _, run in ipairs(runs) do
    local run_code = string.sub(run, 41, 41)
    if run_code ~= 'r' then outcomes[#outcomes + 1] = run_code end
  end
  rec.outcomes = table.concat(outcomes)
  if rec.legacy_runs and #runs >= keep then
    -- the full history now recognises every redelivery older than its oldest run
    local oldest = tonumber(string.sub(runs[#runs], 1, 13)) / 1000
    local legacy = prefix .. 'runs:' .. id
    redis.call('ZREMRANGEBYSCORE', legacy, '-inf', '(' .. oldest)
    if redis.call('EXISTS', legacy) == 0 then rec.legacy_runs = nil end
  end
  redis.call('HSET', records, id, cjson.encode(rec))
  redis.call('HSET', history, id, table.concat(runs, '\n'))
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

# One bounded step of the retention sweep: HSCAN a few entries of `machines` from the
# shared cursor and remove the machines seen before the cutoff, unless in the inventory,
# with every per-machine entry and key the store has.
_REMOVE_EXPIRED = r"""
local machines, records, history, inventory = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cursor_key, version = KEYS[5], KEYS[6]
local prefix, cutoff, count = ARGV[1], ARGV[2], ARGV[3]
local reply = redis.call('HSCAN', machines, redis.call('GET', cursor_key) or '0', 'COUNT', count)
local entries, removed = reply[2], 0
for i = 1, #entries, 2 do
  local id, seen = entries[i], entries[i + 1]
  -- lastseen strings sort as the times they write
  if seen < cutoff and redis.call('HEXISTS', inventory, id) == 0 then
    redis.call('HDEL', machines, id)
    redis.call('HDEL', records, id)
    redis.call('HDEL', history, id)
    redis.call('DEL', prefix .. 'runs:' .. id)
    removed = removed + 1
  end
end
redis.call('SET', cursor_key, reply[1])
if removed > 0 then redis.call('INCR', version) end
return {removed, #entries / 2, reply[1]}
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


# Replace the quarantines of one `<provisioner>/<workerType>` with the given ones (machine id
# -> their JSON): entries of that queue no longer listed are dropped.
_REPLACE_QUARANTINES = r"""
local quarantine, version = KEYS[1], KEYS[2]
local queue, wanted = ARGV[1], cjson.decode(ARGV[2])
local changed = 0
local current = redis.call('HGETALL', quarantine)
for i = 1, #current, 2 do
  local id = current[i]
  if wanted[id] == nil and cjson.decode(current[i + 1]).queue == queue then
    redis.call('HDEL', quarantine, id)
    changed = changed + 1
  end
end
for id, value in pairs(wanted) do
  if redis.call('HGET', quarantine, id) ~= value then
    redis.call('HSET', quarantine, id, value)
    changed = changed + 1
  end
end
if changed > 0 then redis.call('INCR', version) end
return changed
"""

# Backfill from Taskcluster's worker list: for each [id, lastseen, firstseen or '', provisioner,
# worker type], raise lastseen (never lower it) and fill in the record; a machine the listener
# never recorded a run of says it is known from Taskcluster only.
_BACKFILL = r"""
local machines, records, version = KEYS[1], KEYS[2], KEYS[3]
local written, kept = 0, 0
for _, item in ipairs(cjson.decode(ARGV[1])) do
  local id, seen, first, provisioner, worker_type = item[1], item[2], item[3], item[4], item[5]
  local current = redis.call('HGET', machines, id)
  if (not current) or seen > current then
    redis.call('HSET', machines, id, seen)
    local raw = redis.call('HGET', records, id)
    local rec
    if raw then rec = cjson.decode(raw) else rec = {completed = 0, failed = 0, exception = 0} end
    if first ~= '' and ((not rec.firstseen) or first < rec.firstseen) then rec.firstseen = first end
    if not rec.worker_type then rec.provisioner, rec.worker_type = provisioner, worker_type end
    if not rec.task_id then rec.source = 'taskcluster' end
    redis.call('HSET', records, id, cjson.encode(rec))
    written = written + 1
  else
    kept = kept + 1
  end
end
if written > 0 then redis.call('INCR', version) end
return {written, kept}
"""

TASKCLUSTER_COUNTERS = ("consecutive_failures", "polls", "failures")


class Quarantine(NamedTuple):
    """A machine's quarantine in Taskcluster: until when (the lastseen format), why, by whom,
    and the `<provisioner>/<workerType>` it was read for."""

    until: str
    reason: str | None
    by: str | None
    queue: str

    def as_json(self) -> dict[str, str | None]:
        """What the API serves as a machine's `quarantine`."""
        return {"until": self.until, "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class BackfillItem:
    """What a backfill writes for one machine (times naive UTC)."""

    machine_id: str
    lastseen: datetime
    firstseen: datetime | None
    provisioner: str
    worker_type: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch changed."""

    written: int
    duplicates: int
    ignored: int = 0


class Run(NamedTuple):
    """One run of a machine's history; times in the lastseen format, None when not known."""

    task_id: str
    run_id: int
    state: str
    reason_resolved: str | None
    started: str | None
    resolved: str | None


@dataclass(frozen=True, slots=True)
class SweepStep:
    """What one step of the retention sweep did."""

    removed: int
    examined: int
    # True when this step ended a pass over every machine
    wrapped: bool


class MachineRecord(NamedTuple):
    """One machine as stored: its lastseen and, when known, what it last did.

    A NamedTuple, not a frozen dataclass: /machines builds ten thousand per request.
    `history` (newest first) is read only for one machine at a time.
    """

    machine_id: str
    lastseen: str | None  # None only for an inventory machine never seen (built by the views)
    details: Mapping[str, Any]
    history: Sequence[Run] = ()


# One run in `machine_history`, fixed width so that the store's script reads it by
# position and orders entries by plain string comparison (greater is newer):
# the run's latest time (resolved, else started) in epoch milliseconds (13 digits),
# 1 once ended (a resolution sorts after a start at the same instant), the taskId
# (a slugid: 22 characters), the runId (4 digits), the outcome code, the start
# (13 digits, zeros when not known), and the reason when the code does not say it.
# Filled by position, which is four times as fast as str.format with names.
HISTORY_ENTRY = "%013d%d%s%04d%s%013d%s"
# The reason an entry leaves out because its outcome code says it.
_REASON_OF_OUTCOME = {COMPLETED: "completed", FAILED: "failed", LOST: LOST_REASON, RUNNING: None}


def _entry_time(moment: datetime) -> int:
    # 13 digits hold 1970 to 2286: a time outside would break the entry's fixed width
    milliseconds = epoch_milliseconds(moment)
    if 0 < milliseconds <= 9_999_999_999_999:
        return milliseconds
    return 1 if milliseconds < 1 else 9_999_999_999_999


def _history_time(milliseconds: int) -> str | None:
    return format_lastseen(from_epoch_milliseconds(milliseconds)) if milliseconds else None


def _decode_run(entry: str) -> Run:
    code = entry[40]
    return Run(entry[14:36], int(entry[36:40]), state_of_outcome(code),
               entry[54:] or _REASON_OF_OUTCOME.get(code), _history_time(int(entry[41:54])),
               None if code == RUNNING else _history_time(int(entry[:13])))


def _decode_history(raw: str | None) -> tuple[Run, ...]:
    return tuple(_decode_run(entry) for entry in raw.split("\n")) if raw else ()


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

    def __init__(self, client: redis.Redis, prefix: str = "", *, recent_tasks: int = WINDOW) -> None:
        self.redis = client
        self.prefix = prefix
        # runs kept per machine: what /machines/<id> shows and what the rules need
        self.history_size = max(recent_tasks, WINDOW) + HISTORY_SLACK
        self.machines_key = prefix + "machines"
        self.records_key = prefix + "machine_records"
        self.history_key = prefix + "machine_history"
        self.listener_key = prefix + "listener"
        self.pending_queues_key = prefix + "pending_queues"
        self.version_key = prefix + "version"
        self.inventory_key = prefix + "inventory"
        self.retention_cursor_key = prefix + "retention_cursor"
        self._record_batch = client.register_script(_RECORD_BATCH)
        self._preload = client.register_script(_PRELOAD)
        self._remove_expired = client.register_script(_REMOVE_EXPIRED)
        self.quarantine_key = prefix + "quarantine"
        self.taskcluster_key = prefix + "taskcluster"
        self.taskcluster_turn_key = prefix + "taskcluster_turn"
        self._replace_quarantines = client.register_script(_REPLACE_QUARANTINES)
        self._backfill = client.register_script(_BACKFILL)

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
                items.append(self._worker_item(event))
            else:
                items.append(("p", f"{event.provisioner_id}/{event.worker_type}",
                              f"{event.task_id}/{event.run_id}", repr(epoch_seconds(event.deadline))))
        args = [
            self.prefix, epoch_seconds(now), self.history_size,
            len(events) + skipped + malformed if processed is None else processed,
            skipped, malformed, format_lastseen(received_at or now), orjson.dumps(items),
        ]
        written, duplicates, ignored = self._record_batch(
            keys=[self.machines_key, self.records_key, self.listener_key, self.history_key],
            args=args)
        return BatchResult(int(written), int(duplicates), int(ignored))

    @staticmethod
    def _worker_item(event: WorkerEvent) -> tuple:
        # built for every message the listener records: each time is formatted once
        lastseen_at, state, task_id = event.lastseen, event.state, event.task_id
        reason = event.reason_resolved
        lastseen = format_lastseen(lastseen_at)
        event_time = event.event_time or lastseen_at
        running = state == "running"
        started = event.started
        if started is None and running:
            started = event_time
        # the run's start is evidence of life too, whichever of its messages comes first
        first = lastseen if started is None or started >= lastseen_at else format_lastseen(started)
        code = outcome_code(state, reason)
        if len(task_id) != 22:
            raise ValueError(f"taskId {task_id!r} is not a slugid")
        entry = HISTORY_ENTRY % (
            _entry_time(event_time), not running, task_id, event.run_id, code,
            0 if started is None else _entry_time(started),
            reason or "" if code in (EXCEPTION, NOT_COUNTED) else "")
        deadline = event.deadline
        return (
            "w", event.machine_id, lastseen, first,
            lastseen if event_time is lastseen_at else format_lastseen(event_time),
            event.provisioner_id, event.worker_type, task_id, str(event.run_id), state, reason or "",
            "" if deadline is None else repr(epoch_seconds(deadline)),
            code, entry,
        )

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

    def remove_expired(self, cutoff: datetime, count: int = 1000) -> SweepStep:
        """One bounded step of the retention sweep: of about `count` machines, remove those
        not seen since `cutoff` and not in the inventory, with their history.

        Each step goes on where the last one stopped, whichever listener ran it; a pass
        over every machine takes len(machines) / count steps. Atomic, like every write.
        """
        removed, examined, cursor = self._remove_expired(
            keys=[self.machines_key, self.records_key, self.history_key, self.inventory_key,
                  self.retention_cursor_key, self.version_key],
            args=[self.prefix, format_lastseen(cutoff), count])
        return SweepStep(int(removed), int(examined), cursor in ("0", b"0"))

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

    def lastseen_by_machine(self) -> dict[str, str]:
        """Every machine's lastseen as stored, without what it did (one HGETALL)."""
        return self.redis.hgetall(self.machines_key)

    def data_version(self) -> int:
        """A number that changes whenever machine data changes; read it before the data."""
        return int(self.redis.get(self.version_key) or 0)

    def machine(self, machine_id: str) -> MachineRecord | None:
        """One machine with its history, or None when it was never seen."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.machines_key, machine_id)
        pipe.hget(self.records_key, machine_id)
        pipe.hget(self.history_key, machine_id)
        lastseen, raw, history = pipe.execute()
        if lastseen is None:
            return None
        return MachineRecord(machine_id, lastseen, orjson.loads(raw) if raw else {},
                             _decode_history(history))

    def inventory_lists(self, machine_ref: str) -> bool | None:
        """Whether the inventory lists `<dc>:<host>`, or a machine of a bare hostname; None
        when no inventory is loaded."""
        if ":" in machine_ref:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(self.inventory_key)
            pipe.hexists(self.inventory_key, machine_ref)
            loaded, listed = pipe.execute()
            return bool(listed) if loaded else None
        if not self.redis.exists(self.inventory_key):
            return None
        return any(True for _ in self.redis.hscan_iter(self.inventory_key, match=f"*:{machine_ref}",
                                                       count=1000))

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

    # -- Taskcluster: quarantines, the poll, backfill ---------------------------

    def replace_quarantines(self, queue: str, quarantines: Mapping[str, Quarantine]) -> int:
        """Make `quarantines` (machine id -> its quarantine) the whole set of `queue`'s, at once:
        a machine of that queue not in it is no longer quarantined. The entries changed."""
        wanted = {machine_id: _quarantine_value(quarantine._replace(queue=queue))
                  for machine_id, quarantine in quarantines.items()}
        return int(self._replace_quarantines(keys=[self.quarantine_key, self.version_key],
                                             args=[queue, orjson.dumps(wanted)]))

    def set_quarantine(self, machine_id: str, quarantine: Quarantine | None) -> None:
        """Record one machine's quarantine (None: lifted) at once, as the CLI just set it."""
        pipe = self.redis.pipeline(transaction=True)
        if quarantine is None:
            pipe.hdel(self.quarantine_key, machine_id)
        else:
            pipe.hset(self.quarantine_key, machine_id, _quarantine_value(quarantine))
        pipe.incr(self.version_key)
        pipe.execute()

    def quarantines(self, now: datetime | None = None) -> dict[str, Quarantine]:
        """Machine id -> its quarantine as last read from Taskcluster (or set by the CLI);
        given `now`, only those lasting past it."""
        cutoff = None if now is None else format_lastseen(now)
        found = {}
        for machine_id, raw in self.redis.hgetall(self.quarantine_key).items():
            value = orjson.loads(raw)
            quarantine = Quarantine(value["until"], value.get("reason"), value.get("by"),
                                    value.get("queue", ""))
            if cutoff is None or quarantine.until > cutoff:
                found[machine_id] = quarantine
        return found

    def take_taskcluster_turn(self, holder: str, seconds: float) -> bool:
        """True when this holder may poll Taskcluster now: nobody polled in the last `seconds`."""
        return bool(self.redis.set(self.taskcluster_turn_key, holder, nx=True,
                                   px=max(1, int(seconds * 1000))))

    def taskcluster_polled(self, now: datetime, error: str | None = None) -> None:
        """Note one poll of Taskcluster: complete and good (error None), or failed with `error`
        (one line, no credential)."""
        at = format_lastseen(now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self.taskcluster_key, "polls", 1)
        if error is None:
            pipe.hset(self.taskcluster_key, mapping={"last_good_poll_at": at, "last_poll_at": at,
                                                     "consecutive_failures": 0})
        else:
            pipe.hincrby(self.taskcluster_key, "failures", 1)
            pipe.hincrby(self.taskcluster_key, "consecutive_failures", 1)
            pipe.hset(self.taskcluster_key, mapping={"last_poll_at": at, "last_error": error[:300],
                                                     "last_error_at": at})
        pipe.execute()

    def taskcluster_status(self) -> dict[str, Any]:
        """The poll's status: last_good_poll_at, last_poll_at, last_error, last_error_at (str or
        None) and the counters consecutive_failures, polls, failures (int)."""
        stored = self.redis.hgetall(self.taskcluster_key)
        status: dict[str, Any] = {name: stored.get(name) for name in (
            "last_good_poll_at", "last_poll_at", "last_error", "last_error_at")}
        status.update((name, int(stored.get(name) or 0)) for name in TASKCLUSTER_COUNTERS)
        return status

    def backfill(self, items: Sequence[BackfillItem], chunk: int = 5000) -> tuple[int, int]:
        """Raise lastseen (never lower it), firstseen and the worker type of machines from
        Taskcluster's worker list, all or nothing; (written, kept because newer)."""
        rows = [(item.machine_id, format_lastseen(item.lastseen),
                 "" if item.firstseen is None else format_lastseen(item.firstseen),
                 item.provisioner, item.worker_type) for item in items]

        def queue_writes(pipe: Any) -> None:
            pipe.multi()
            for start in range(0, len(rows), chunk):
                self._backfill(keys=[self.machines_key, self.records_key, self.version_key],
                               args=[orjson.dumps(rows[start:start + chunk])], client=pipe)
        written = kept = 0
        for chunk_written, chunk_kept in self._all_or_nothing(queue_writes):
            written, kept = written + int(chunk_written), kept + int(chunk_kept)
        return written, kept


def _inventory(stored: Mapping[str, str]) -> dict[str, str | None]:
    # "" stands for "no worker type": a worker type is never empty
    return {machine_id: worker_type or None for machine_id, worker_type in stored.items()}


def _quarantine_value(quarantine: Quarantine) -> str:
    # sorted keys: the script compares stored and new values as strings
    return orjson.dumps({"until": quarantine.until, "reason": quarantine.reason, "by": quarantine.by,
                         "queue": quarantine.queue}, option=orjson.OPT_SORT_KEYS).decode()
