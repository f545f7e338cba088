"""The broker side: the durable Pulse queue and its bindings, opening and closing connections."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from kombu import Connection, Exchange, Queue, binding

from ..core.config import Config
from ..core.events import bindings

log = logging.getLogger(__name__)

# The longest a live broker takes to accept a connection, answer a request or take our bytes.
# Without it a request waits forever on a peer that went silent: py-amqp reads and writes
# with no timeout outside drain_events, and missed heartbeats are only checked between them.
BROKER_TIMEOUT = 10.0
# A polite close on stopping waits this long for the broker before dropping the connection.
CLOSE_TIMEOUT = 5.0


def declare_queue(config: Config) -> Queue:
    """The durable queue, bound to the queue service's exchanges for our provisioners."""
    return Queue(
        config.queue_name,
        durable=True,
        auto_delete=False,
        exclusive=False,
        bindings=[
            # passive: Pulse owns these exchanges and refuses to let clients declare them
            binding(Exchange(exchange_name, type="topic", passive=True), routing_key=routing_key)
            for exchange_name, routing_key in bindings(config.provisioner_ids)
        ],
    )


def tls_options(amqp_url: str) -> dict[str, Any] | None:
    """For amqps://, verify the certificate and the host name (ssl=True alone skips the name)."""
    if not amqp_url.startswith("amqps://"):
        return None
    # kombu fills a None server_hostname with the URL's host, which turns on check_hostname
    return {"server_hostname": None, "cert_reqs": ssl.CERT_REQUIRED}


def open_connection(config: Config) -> Connection:
    """The broker connection, with heartbeats on (kombu's default has none)."""
    return Connection(
        config.amqp_url,
        heartbeat=config.amqp_heartbeat,
        ssl=tls_options(config.amqp_url),
        connect_timeout=BROKER_TIMEOUT,
        transport_options={"confirm_publish": True},
    )


def bound_waits(connection: Connection, timeout: float = BROKER_TIMEOUT) -> None:
    """After connecting: every read or write on the socket gives up after `timeout` seconds.

    drain_events sets its own timeout and puts this one back. py-amqp's read_timeout option
    (SO_RCVTIMEO) would not do: over TLS a blocking read that times out is simply retried.
    """
    sock = _socket(connection)
    if sock is not None:
        sock.settimeout(timeout)


def queue_backlog(channel: Any, queue_name: str) -> tuple[int, int] | None:
    """(messages, consumers) of the queue, or None when the broker does not say."""
    try:
        _, messages, consumers = channel.queue_declare(queue_name, passive=True)
    except Exception:
        log.debug("could not read the queue backlog", exc_info=True)
        return None
    return messages, consumers


def drop_connection(connection: Connection) -> None:
    """Close our end of a connection without a word to the broker.

    After an error the peer may be gone without a trace (a NAT or a load balancer losing
    state): kombu's release() would send Channel.Close and wait for its answer forever.
    """
    try:
        connection.collect()
    except Exception:  # the socket is ours to forget whatever state it is in
        log.debug("error dropping a broker connection", exc_info=True)


def close_connection(connection: Connection, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close politely when the broker answers within `timeout`; drop the connection otherwise."""
    try:
        bound_waits(connection, timeout)  # py-amqp waits for Close-Ok with the socket's timeout
        connection.release()
    except Exception:
        log.debug("the broker did not see the connection closed", exc_info=True)
        drop_connection(connection)


def _socket(connection: Connection) -> Any:
    """The socket under a connected AMQP connection; None when not connected or not AMQP."""
    if not connection.connected:  # reading .connection would open one
        return None
    return getattr(getattr(connection.connection, "transport", None), "sock", None)
