"""releng-hardware: when each Taskcluster hardware worker was last seen doing work.

How the package is organised. Each subpackage's docstring lists its modules the same way.
Imports flow down these lists, never up: between subpackages and inside each one.

    core         pure: identifiers, times, settings, records, the problem rules, message parsing
    store        Redis: every key and Lua script, atomic and monotonic writes, reads
    views        what is served, from records: machines as JSON, filters, summary, the reads
    taskcluster  Taskcluster's worker state: the client, the poller, quarantine, lift, backfill
    ingest       from Pulse into the store: the write-then-ack pipeline, broker, listener
    web          the Flask app: its factory, the blueprints, templates and static files
    tools        what the commands read and make: preload, inventory, simulator, fake Taskcluster
    cli          process entry points and the commands: configuration and logging at the edge
    inventory    `python -m releng_hardware.inventory`: the inventory command (as cli's)

The three processes are webserver.py, listen_to_pulse.py and preload_redis.py at the top of
the repository; each only calls into cli. I/O is injected (a Redis client, an AMQP
connection) and time is a parameter, so everything above store and listener is testable with
plain values.
"""

import sys

__version__ = "1.0.0"

# The modules that are programs (`python -m releng_hardware.<name>`). Any other run as one
# would import and exit 0 having done nothing: it says so and fails instead.
COMMANDS = ("cli", "inventory", "tools.fake_taskcluster")


def _refuse_a_module_that_is_no_command(argv: list[str]) -> None:
    try:
        module = argv[argv.index("-m") + 1]
    except (ValueError, IndexError):
        return
    if module.startswith(__name__ + ".") and module.removeprefix(__name__ + ".") not in COMMANDS:
        commands = ", ".join(f"python -m {__name__}.{name}" for name in COMMANDS)
        sys.exit(f"{module} is no command; the commands are releng-hardware --help, {commands}")


_refuse_a_module_that_is_no_command(getattr(sys, "orig_argv", []))
