"""Varied traffic through the store, then every key under the prefix and every view's answer as
JSON on stdout.

Run as a program (`python tests/store_traffic.py REDIS_URL PREFIX`) by
tests/integration/test_stored_bytes.py, once with this tree's package and once with the
package of the commit before issue 22 rearranged the package and its Lua (PYTHONPATH): the two dumps
must be equal byte for byte, and so must the answers. It imports nothing of tests/, and only what both trees have.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from typing import Any

import releng_hardware

try:
    from releng_hardware.core.config import Config
    from releng_hardware.core.events import PendingEvent, WorkerEvent
    from releng_hardware.core.records import BackfillItem, Quarantine
    from releng_hardware.core.times import format_lastseen
    from releng_hardware.store.machines import Store, open_redis
    from releng_hardware.views.reads import read_machines_from_views, read_summary
    from releng_hardware.web.app import create_app
except ImportError:  # the flat package of the releases before the subpackages (issue 22)
    from releng_hardware.config import Config  # type: ignore[no-redef]
    from releng_hardware.events import PendingEvent, WorkerEvent  # type: ignore[no-redef]
    from releng_hardware.records import BackfillItem, Quarantine  # type: ignore[no-redef]
    from releng_hardware.times import format_lastseen  # type: ignore[no-redef]
    from releng_hardware.store import Store, open_redis  # type: ignore[no-redef]
    from releng_hardware.snapshot import read_machines_from_views, read_summary  # type: ignore[no-redef]
    from releng_hardware.web import create_app  # type: ignore[no-redef]

NOW = datetime(2026, 11, 20, 18, 0, 0)
PROVISIONER = "releng-hardware"
WORKER_TYPES = ("gecko-t-linux-talos", "gecko-t-win10-64-hw", "gecko-t-osx-1015")
LABELS = tuple(f"test-platform/opt-suite-{n}" for n in range(6))
RESOLUTIONS = (("completed", None), ("completed", None), ("completed", None), ("failed", None),
               ("failed", None), ("exception", "worker-shutdown"), ("exception", "claim-expired"),
               ("exception", "canceled"), ("exception", "deadline-exceeded"))
LEGACY = "mdc1:t-host-3"


def traffic(rng: random.Random, hosts: int, runs: int, now: datetime) -> list[Any]:
    """Runs of `hosts` machines over the 12 hours before `now`, most labelled, some still
    running; tasks waiting, some past their deadline, some started since."""
    events: list[Any] = []
    for number in range(runs):
        host = rng.randrange(hosts)
        worker_type = WORKER_TYPES[host % 3]
        started = now - timedelta(seconds=rng.randrange(60, 12 * 3600), microseconds=rng.randrange(10**6))
        resolved = started + timedelta(seconds=rng.randrange(30, 3000))
        task = f"T{number:05d}{rng.randrange(10**6):06d}QAGAAAAAAAAAAA"[:22]
        label = rng.choice(LABELS) if rng.random() < 0.8 else None
        deadline = now + timedelta(days=1) if rng.random() < 0.9 else None
        start = WorkerEvent(("mdc1", "mdc2")[host % 2], f"t-host-{host}",
                            PROVISIONER if host % 7 else "other-prov", worker_type, task,
                            rng.randrange(3), "running", None, started, deadline, True, started,
                            started, label)
        if rng.random() < 0.9:
            events.append(start)
        if rng.random() < 0.85 and resolved < now:
            state, reason = rng.choice(RESOLUTIONS)
            events.append(start._replace(state=state, reason_resolved=reason or state,
                                         lastseen=resolved, event_time=resolved,
                                         started=started if rng.random() < 0.8 else None))
        if rng.random() < 0.1:
            events.append(PendingEvent(PROVISIONER, worker_type, task, 0, started,
                                       now + timedelta(hours=rng.choice((-1, 1, 2)))))
    return events


def deliver(store: Store, rng: random.Random, events: list[Any], now: datetime) -> None:
    """Shuffled, some delivered twice, in batches of random sizes."""
    events = events + rng.sample(events, len(events) // 10)
    rng.shuffle(events)
    at = 0
    while at < len(events):
        size = rng.randrange(1, 60)
        store.record(events[at:at + size], now=now, skipped=rng.randrange(2),
                     malformed=rng.randrange(2))
        at += size


def seed_legacy(store: Store) -> None:
    """What the versions before the history and before labels left: a record without outcomes,
    its run set, and history entries with their reason where the attribution is now."""
    client, prefix = store.redis, store.prefix
    client.hset(prefix + "machines", LEGACY, format_lastseen(NOW - timedelta(hours=13)))
    client.hset(prefix + "machine_records", LEGACY, json.dumps(
        {"provisioner": PROVISIONER, "worker_type": WORKER_TYPES[0], "completed": 3, "failed": 0,
         "exception": 0, "firstseen": format_lastseen(NOW - timedelta(days=3))}))
    client.zadd(prefix + "runs:" + LEGACY, {
        f"OLD{n:04d}AAAAQAGAAAAAAAA/0/completed": (NOW - timedelta(hours=14 + n)).timestamp()
        for n in range(3)})
    old = [f"{1795000000000 - n * 60000:013d}1OLD{n:04d}AAAAQAGAAAAAAAA{0:04d}c"
           f"{1795000000000 - n * 60000 - 5000:013d}" for n in range(3)]
    client.hset(prefix + "machine_history", LEGACY, "\n".join(old))


def dump(store: Store) -> dict[str, Any]:
    """Every key under the prefix, by type; a key that expires says so (not when)."""
    client, prefix = store.redis, store.prefix
    found: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=prefix + "*", count=1000)):
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        else:
            value = client.dump(key)
        found[key.removeprefix(prefix)] = [kind, value, client.pttl(key) > 0]
    return found


def served(client: Any, config: Config, now: datetime, seen: list[str]) -> dict[str, Any]:
    """Each view's status, type and body at `now`, as the web app serves them; every page of
    /machines followed by its cursor."""
    app = create_app(config, redis=client, clock=lambda: now)
    app.testing = True
    web = app.test_client()
    paths = ["/machines", "/machines?format=csv", "/machines?fields=machine,datacenter,lastseen",
             "/machines?problem=any", "/machines?sort=-lastseen&fields=machine,lastseen,problems",
             "/summary", "/labels", "/labels?format=csv", "/", "/?page=2", "/metrics",
             "/machines/mdc9:t-unknown", "/machines?limit=nope"]
    for machine_id in (*seen[:8], LEGACY, "mdc1:t-never", "mdc1:t-backfilled"):
        paths += [f"/machines/{machine_id}", f"/machines/{machine_id.partition(':')[2]}",
                  f"/machine/{machine_id}"]
    answers: dict[str, Any] = {}
    page = "/machines?limit=9"
    while page:
        paths.append(page)
        cursor = web.get(page).headers.get("X-Next-Cursor")
        page = f"/machines?limit=9&cursor={cursor}" if cursor else ""
    for path in paths:
        answer = web.get(path)
        answers[path] = [answer.status_code, answer.content_type, answer.get_data(as_text=True)]
    return answers


def main(url: str, prefix: str) -> None:
    client = open_redis(url)
    store = Store(client, prefix)
    config = Config(redis_key_prefix=prefix, provisioner_ids=(PROVISIONER,))
    rng = random.Random(22)
    seed_legacy(store)
    deliver(store, rng, traffic(rng, hosts=40, runs=500, now=NOW - timedelta(hours=2)),
            NOW - timedelta(hours=2))
    store.listener_connected(NOW, "queue/test")
    store.listener_heartbeat(NOW)
    read_summary(store, config, NOW)
    deliver(store, rng, traffic(rng, hosts=45, runs=400, now=NOW), NOW)
    read_machines_from_views(store, config, NOW)
    seen = sorted(machine.machine_id for machine in store.machines())
    store.update_inventory(lambda current: {**{machine_id: None for machine_id in seen[:20]},
                                            "mdc1:t-never": WORKER_TYPES[1]})
    until = format_lastseen(NOW + timedelta(days=1))
    store.set_quarantine(seen[0], Quarantine(until, "bad disk", "someone", PROVISIONER))
    store.set_quarantine(seen[1], Quarantine(until, None, None, PROVISIONER))
    store.set_quarantine(seen[1], None)
    store.replace_quarantines(f"{PROVISIONER}/{WORKER_TYPES[0]}", {
        seen[2]: Quarantine(until, "flaky", None, ""), seen[3]: Quarantine(until, None, "x", "")})
    store.replace_quarantines(f"{PROVISIONER}/{WORKER_TYPES[0]}", {
        seen[3]: Quarantine(until, "still", "x", "")})
    store.taskcluster_polled(NOW)
    store.taskcluster_polled(NOW, "it broke")
    store.take_taskcluster_turn("me", 60)
    store.preload({seen[5]: NOW - timedelta(minutes=1), "mdc2:t-preloaded": NOW - timedelta(hours=9),
                   seen[6]: NOW - timedelta(days=9)})
    store.backfill([
        BackfillItem("mdc2:t-preloaded", NOW - timedelta(minutes=3), None, PROVISIONER, WORKER_TYPES[1]),
        BackfillItem("mdc1:t-backfilled", NOW - timedelta(minutes=2), NOW - timedelta(days=3),
                     PROVISIONER, WORKER_TYPES[2]),
        BackfillItem(seen[7], NOW - timedelta(days=20), NOW - timedelta(days=30), PROVISIONER,
                     WORKER_TYPES[0])])
    read_summary(store, config, NOW)
    cutoff = NOW - timedelta(hours=9, minutes=30)
    while not store.remove_expired(cutoff, 7).wrapped:
        pass
    # the machine order and the index rebuilt over data written before them
    client.delete(prefix + "machine_order", prefix + "machine_order_state", prefix + "index:state")
    store.build_machine_order(step=5)
    store.machine_order_page(None, 10, NOW)
    read_summary(store, config, NOW)
    deliver(store, rng, traffic(rng, hosts=50, runs=150, now=NOW + timedelta(minutes=30)),
            NOW + timedelta(minutes=30))
    read_machines_from_views(store, config, NOW + timedelta(minutes=30))
    keys = dump(store)
    answers = served(client, config, NOW + timedelta(minutes=30), seen)
    sys.stderr.write(releng_hardware.__file__ + "\n")
    json.dump({"keys": keys, "answers": answers}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
