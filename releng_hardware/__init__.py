"""releng-hardware: when each Taskcluster hardware worker was last seen doing work.

How the package is organised. Imports flow down this list, never up:

    identifiers  Taskcluster's identifier rule and the machine id <dc>:<host> (one definition)
    times        the lastseen format, time parsing, durations, the clock-skew limit
    config       settings: parsed once from a mapping, documented, verified at start-up
    records      plain data, no I/O: MachineRecord, Run, a run's outcome code
    problems     the problem rules: pure functions of a machine's facts
    events       pure parsing: a queue message in, a WorkerEvent / PendingEvent / Skip out
    history      the history entry: one run as a fixed-width string, encoded and decoded
    peers        a label's runs as stored (fixed-width lines), decoded; a run's peers counted
    store        every Redis key and Lua script (lua/); atomic, monotonic batch writes; reads
    workers      Taskcluster's worker state through the official client: listWorkers (every page),
                 getWorker, quarantineWorker; bounded, checked calls; credentials never leave it
    poller       the listener's Taskcluster poll: quarantines into the store, on a thread, in turns
    pipeline     the write-then-ack pipeline, kombu-free: batches, writes in flight, in-order
                 acks, the one Redis retry helper
    broker       the durable queue and its bindings; opening, closing and dropping connections
    watchdog     a consume loop making no progress ends the process, for a restart
    listener     kombu wiring: consume into the pipeline; reconnects, liveness, signals
    params       query parameter values, parsed strictly (BadParameter names the parameter)
    fields       a machine as the API serves it: one table of its fields (JSON, CSV, OpenAPI)
    fleet        pure views: a machine as JSON, filters, sorting, summary, CSV, listener health
    tallies      the machine index's rules: a machine's group and judgement; /summary from the
                 index's per-group figures (pure)
    snapshot     the reads behind the views: the store read once, the pure views applied at now
    appstate     what create_app gives the views: store, settings, clock, version; app_state()
    responses    what every view shares: JSON answers and errors, strict query parsing, ETags
    api          blueprint: /machines, /machines/<id>, /summary
    labels       blueprint: /labels, the task labels failing on several machines (JSON, CSV)
    dockerflow   blueprint: /__lbheartbeat__, /__heartbeat__, /__version__
    dashboard    blueprint: the page at / (templates/, static/: no build step, nothing external)
    metrics      blueprint: /metrics (prometheus-client, a registry per scrape)
    openapi      blueprint: /openapi.json, built from the code's own constants
    web          create_app(config, redis=None): assembles the blueprints and error handlers
    preload      /machines JSON in, validated, for the store to load
    inventory    the expected inventory: JSON, CSV or lines in, validated; the load rules
    actions      quarantine, lift and backfill: choosing machines, the safety limit, the calls
    simulate     realistic queue messages for a made-up fleet
    standin      a local Taskcluster stand-in (worker routes, Hawk check, faults) for tests and scripts/run
    cli          process entry points and the commands (listen, preload, simulate, inventory):
                 configuration and logging at the edge

The three processes are webserver.py, listen_to_pulse.py and preload_redis.py at the top of
the repository; each only calls into cli. I/O is injected (a Redis client, an AMQP
connection) and time is a parameter, so everything above store and listener is testable with
plain values.
"""

__version__ = "1.0.0"
