"""End to end on the real broker and Redis: simulator -> RabbitMQ -> listener -> Redis -> Flask."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

from kombu import Connection

from releng_hardware.core.events import EXCHANGE_PREFIX, parse_message
from releng_hardware.tools.simulate import backlog
from releng_hardware.store.machines import Store
from releng_hardware.core.times import LASTSEEN_FORMAT, format_lastseen, utcnow
from releng_hardware.web.app import create_app
from tests.conftest import AMQP_URL, wait_for


def expected_lastseen(messages, provisioner_id):
    """What one ordered pass of the messages should leave per machine."""
    best: dict[str, datetime] = {}
    for message in messages:
        event = parse_message(message.exchange, message.routing_key, message.encoded(), utcnow(),
                              (provisioner_id,))
        machine_id = getattr(event, "machine_id", None)
        if machine_id:
            best[machine_id] = max(best.get(machine_id, event.lastseen), event.lastseen)
    return {machine_id: format_lastseen(moment) for machine_id, moment in best.items()}


def test_published_messages_reach_the_api(amqp_config, real_store, real_redis, listener_thread,
                                          publish, provisioner_id):
    listener_thread()
    messages = backlog(600, machines=30, end=utcnow(), provisioner_id=provisioner_id)
    publish(messages)
    wait_for(lambda: int(real_store.listener_status().get("processed", 0)) >= 600, 20,
             "the listener did not process every message")

    app = create_app(amqp_config, redis=real_redis)
    body = app.test_client().get("/machines").get_json()

    assert {machine["id"]: machine["lastseen"] for machine in body} == \
        expected_lastseen(messages, provisioner_id)
    for machine in body:
        datetime.strptime(machine["lastseen"], LASTSEEN_FORMAT)
        assert machine["provisioner"] == provisioner_id
    assert int(real_store.listener_status()["malformed"]) == 0


def test_queue_is_durable_and_bound_to_the_four_exchanges(amqp_config, listener_thread):
    listener_thread()
    with Connection(AMQP_URL) as connection:
        # passive declare fails unless the queue exists; a durable queue survives the listener
        name, messages, consumers = connection.default_channel.queue_declare(
            amqp_config.queue_name, passive=True)
    assert name == amqp_config.queue_name and consumers == 1
    rows = subprocess.run(
        ["rabbitmqctl", "-q", "list_bindings", "source_name", "destination_name", "routing_key"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    bound = {tuple(row.split("\t")) for row in rows if amqp_config.queue_name in row}
    provisioner = amqp_config.provisioner_ids[0]
    assert {(source, key) for source, _, key in bound if source} == {
        (EXCHANGE_PREFIX + name, f"primary.*.*.*.*.{provisioner}.*.*.*.#")
        for name in ("task-pending", "task-running", "task-completed", "task-failed",
                     "task-exception")
    }


def test_other_provisioners_messages_never_reach_the_queue(amqp_config, real_store, listener_thread,
                                                           publish, provisioner_id):
    listener_thread()
    now = utcnow()
    publish(backlog(50, machines=5, end=now, provisioner_id="someone-else"))
    publish(backlog(10, machines=2, end=now + timedelta(seconds=1), provisioner_id=provisioner_id))
    wait_for(lambda: int(real_store.listener_status().get("processed", 0)) >= 10, 10,
             "the listener did not process its messages")
    assert all(":" in machine.machine_id for machine in real_store.machines())
    assert {machine.details.get("provisioner") for machine in real_store.machines()} == {provisioner_id}
    assert int(real_store.listener_status()["processed"]) == 10


def without_ratios(details: dict) -> dict:
    return {name: value for name, value in details.items() if name != "peer_ratios"}


def test_two_listeners_on_one_queue_give_the_same_state_as_one(amqp_config, real_redis, redis_prefix,
                                                              listener_thread, publish, provisioner_id):
    messages = backlog(1500, machines=40, end=utcnow(), provisioner_id=provisioner_id,
                       duplicate_rate=0.2, reorder_window=50)
    listener_thread()
    listener_thread()
    publish(messages)
    store = Store(real_redis, redis_prefix)
    wait_for(lambda: int(store.listener_status().get("processed", 0)) >= 1500, 30,
             "two listeners did not process every message")

    reference = Store(real_redis, redis_prefix + "reference:")
    events = [parse_message(m.exchange, m.routing_key, m.encoded(), utcnow(), (provisioner_id,))
              for m in messages]
    reference.record([event for event in events if hasattr(event, "task_id")], now=utcnow())
    # the peer ratios use the peer median known when a completion is recorded: order may move
    # them (the issue allows it); everything else, the attributions included, is one pass's
    assert {m.machine_id: (m.lastseen, without_ratios(m.details)) for m in store.machines()} == \
        {m.machine_id: (m.lastseen, without_ratios(m.details)) for m in reference.machines()}
