"""From Pulse into the store: the write-then-ack pipeline, the broker, the watchdog, the listener.

    pipeline     the write-then-ack pipeline, kombu-free: batches, writes in flight, in-order
                 acks, the one Redis retry helper
    broker       the durable queue and its bindings; opening, closing and dropping connections
    watchdog     a consume loop making no progress ends the process, for a restart
    listener     kombu wiring: consume into the pipeline; reconnects, liveness, signals
"""
