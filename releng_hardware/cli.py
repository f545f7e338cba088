"""Process entry points: configuration and logging at the edge, then into the package."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Mapping, NoReturn

import click
import redis

from .core.config import Config, ConfigError, mask_url
from .core.times import utcnow


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit, instead of a traceback."""
    print(f"releng-hardware: {message}", file=sys.stderr)
    sys.exit(code)


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """The settings from the environment, or exit with the problem."""
    try:
        return Config.from_environ(os.environ if environ is None else environ)
    except ConfigError as exc:
        fail(f"configuration error: {exc}")


def setup_logging(level: str) -> None:
    """One line per record on stdout, as Heroku's log router expects."""
    logging.basicConfig(stream=sys.stdout, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("amqp").setLevel(logging.WARNING)
    logging.getLogger("kombu").setLevel(logging.WARNING)


def open_store(config: Config) -> Any:
    """The store of the configured Redis and key prefix."""
    from .store.machines import Store, open_redis
    client = open_redis(config.redis_url, config.redis_timeout, tls_verify=config.redis_tls_verify)
    return Store.from_config(config, client)


def wsgi_app() -> Any:
    """The Flask app for gunicorn (`webserver:app`)."""
    from .web.app import create_app
    config = load_config()
    setup_logging(config.log_level)
    return create_app(config)


def listen() -> None:
    """Console script: run the Pulse listener until SIGTERM."""
    from .ingest.listener import main
    config = load_config()
    try:
        config.amqp_url  # noqa: B018 -- reading it validates the broker settings
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    setup_logging(config.log_level)
    sys.exit(main(config, open_store(config), taskcluster=taskcluster_client(config)))


@click.command(help="Load the /machines JSON array from stdin into Redis. Nothing is written "
                    "unless every entry is valid; no machine's lastseen moves backwards.")
@click.option("--dry-run", is_flag=True, help="Validate only; write nothing.")
def preload(dry_run: bool) -> None:
    """Console script: preload Redis from /machines JSON on stdin."""
    from .tools.preload import PreloadError, parse_entries
    from .store.machines import load_failure
    config = load_config()
    raw = sys.stdin.buffer.read()
    try:
        entries = parse_entries(raw, utcnow())
    except PreloadError as exc:
        fail(f"nothing written: {exc}", code=1)
    if dry_run:
        click.echo(f"{len(entries)} entries valid; nothing written (dry run)")
        return
    try:
        written, kept = open_store(config).preload(entries)
    except redis.RedisError as exc:
        fail(f"Redis at {mask_url(config.redis_url)} {load_failure(exc)}", code=1)
    click.echo(f"{len(entries)} entries read: {written} written, {kept} kept because newer")


@click.group(help="The expected inventory: the machines that should exist.")
def inventory() -> None:
    """Console script `releng-hardware-inventory` (also `releng-hardware inventory`)."""


@inventory.command(name="load",
                   help="Read the inventory on stdin (the /machines JSON array, CSV with a header "
                        "naming datacenter, machine and optionally worker_type, or lines "
                        "'datacenter:hostname [worker_type]') and replace the stored one. Nothing "
                        "is written unless every entry is valid. Prints one line: the machines "
                        "after the load, added, removed, unchanged, changed worker type.")
@click.option("--merge", is_flag=True, help="Add to the inventory instead of replacing it.")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--force", is_flag=True,
              help="Replace even when that removes more than a tenth of the inventory.")
def inventory_load(merge: bool, dry_run: bool, force: bool) -> None:
    """Load the inventory from stdin, all or nothing."""
    from .tools.inventory import InventoryChange, InventoryError, parse_inventory, plan_load
    from .store.machines import load_failure
    config = load_config()
    try:
        loaded = parse_inventory(sys.stdin.buffer.read())
    except InventoryError as exc:
        fail(f"nothing written: {exc}", code=1)
    planned: list[InventoryChange] = []

    def decide(current: dict[str, str | None]) -> Mapping[str, str | None] | None:
        planned.append(plan_load(current, loaded, merge=merge, force=force))
        return None if dry_run else planned[-1].after

    try:
        open_store(config).update_inventory(decide)
    except InventoryError as exc:
        fail(f"nothing written: {exc}", code=1)
    except redis.RedisError as exc:
        fail(f"Redis at {mask_url(config.redis_url)} {load_failure(exc)}", code=1)
    click.echo(planned[-1].summary() + (" (dry run: nothing written)" if dry_run else ""))


@inventory.command(name="show", help="Print the inventory as a JSON array in the /machines shape; "
                                     "`show | load` changes nothing.")
def inventory_show() -> None:
    """Print the stored inventory."""
    from .tools.inventory import inventory_json
    config = load_config()
    try:
        machines = open_store(config).inventory()
    except redis.RedisError as exc:
        fail(f"Redis at {mask_url(config.redis_url)} failed: {exc}", code=1)
    sys.stdout.buffer.write(inventory_json(machines))


@click.command(help="Publish realistic Taskcluster queue messages for a made-up fleet on the "
                    "broker of PULSE_URL (a local RabbitMQ), declaring the queue's exchanges.")
@click.option("--machines", default=40, show_default=True, help="Fleet size.")
@click.option("--count", default=0, show_default=True, help="Stop after this many messages (0: never).")
@click.option("--backlog", is_flag=True,
              help="Publish --count messages of a past day at once, instead of in real time.")
@click.option("--seed", default=1, show_default=True, help="Random seed.")
@click.option("--wait-for-listener", default=0.0, show_default=True, metavar="SECONDS",
              help="First declare the exchanges and wait up to this long for the listener's "
                   "queue, so that no message is published before anyone listens.")
def simulate(machines: int, count: int, backlog: bool, seed: int, wait_for_listener: float) -> None:
    """Console script: run the queue simulator."""
    import itertools

    from kombu import Connection

    from .tools import simulate as sim
    config = load_config()
    if not config.pulse_url:
        fail("the simulator publishes only to a broker you run: set PULSE_URL "
             "(e.g. amqp://guest:guest@localhost:5672/)")
    setup_logging(config.log_level)
    stopping: list[bool] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    if backlog:
        if count <= 0:
            fail("--backlog needs --count")
        messages: Any = sim.backlog(count, machines, end=utcnow(), seed=seed,
                                    provisioner_id=config.provisioner_ids[0])
    else:
        messages = sim.live(sim.fleet(machines), utcnow(), seed=seed,
                            provisioner_id=config.provisioner_ids[0])
        if count:
            messages = itertools.islice(messages, count)
    with Connection(config.pulse_url, heartbeat=0) as connection:
        if wait_for_listener:
            sim.declare_exchanges(connection.default_channel)
            if not sim.wait_for_queue(connection, config.queue_name, wait_for_listener):
                fail(f"no listener queue {config.queue_name} after {wait_for_listener:g}s", code=1)
        logging.info("publishing to %s for %d machines", mask_url(config.pulse_url), machines)
        published = sim.publish(connection, messages, should_stop=lambda: bool(stopping))
    click.echo(f"published {published} messages")


# -- releng-hardware: acting on Taskcluster ------------------------------------

def taskcluster_client(config: Config, environ: Mapping[str, str] | None = None) -> Any:
    """The Taskcluster client of TASKCLUSTER_ROOT_URL, signed with TASKCLUSTER_CLIENT_ID and
    TASKCLUSTER_ACCESS_TOKEN when both are set."""
    from .taskcluster.client import Taskcluster, credentials_from_environ
    return Taskcluster(config.taskcluster_root_url,
                       credentials_from_environ(os.environ if environ is None else environ))


@click.group(help="Act on Taskcluster's workers: quarantine, lift, backfill.")
def main() -> None:
    """Console script `releng-hardware`."""


def _selection(command: Any) -> Any:
    for option in reversed((
            click.argument("machines", nargs=-1, metavar="ID..."),
            click.option("--problem", help="The machines with this problem (or `any`)."),
            click.option("--datacenter", help="The machines of this datacenter."),
            click.option("--worker-type", help="The machines of this worker type."),
            click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing."),
            click.option("--force", is_flag=True,
                         help="Change more than QUARANTINE_MAX machines, or more than a tenth of "
                              "a pool, in one call."))):
        command = option(command)
    return command


def _act(machines: tuple[str, ...], problem: str | None, datacenter: str | None,
         worker_type: str | None, dry_run: bool, force: bool, *, seconds: float | None,
         reason: str | None) -> None:
    """Quarantine for `seconds`, or lift when None."""
    from datetime import timedelta

    from .taskcluster.quarantine import choose, over_the_limit, quarantine_machines
    from .views.fleet import MachineQuery
    from .core.params import BadParameter
    from .views.reads import read_fleet
    config = load_config()
    now = utcnow()
    lifting = seconds is None
    until = now if seconds is None else now + timedelta(seconds=seconds)
    args = {name: value for name, value in (("problem", problem), ("datacenter", datacenter),
                                            ("worker_type", worker_type)) if value}
    try:
        query = MachineQuery.from_args(args) if args else None
    except BadParameter as exc:
        fail(str(exc))
    if not machines and query is None:
        fail("name machines, or select them with --problem, --datacenter or --worker-type")
    store = open_store(config)
    try:
        fleet = read_fleet(store, config, now, with_never_seen=False).machines
    except redis.RedisError as exc:
        fail(f"cannot read Redis at {mask_url(config.redis_url)}: {exc}", code=1)
    targets, problems = choose(fleet, machines, query)
    for line in problems:
        click.echo(line)
    if not targets:
        fail("no machine to change; nothing done", code=1)
    limit = over_the_limit(targets, fleet, config.quarantine_max)
    if limit and not force:
        fail(f"refused: {limit}; nothing done (--force if that is meant)", code=1)
    if dry_run:
        for target in targets:
            click.echo(f"{target.machine_id}: would be {'lifted' if lifting else 'quarantined'}"
                       + ("" if lifting else f" until {until.isoformat(timespec='seconds')}"))
        click.echo(f"{len(targets)} machines; nothing changed (dry run)")
        sys.exit(1 if problems else 0)
    taskcluster = taskcluster_client(config)
    if not taskcluster.has_credentials:
        more = f" (and the like for {len(targets) - 1} more)" if len(targets) > 1 else ""
        fail(f"no Taskcluster credentials (set TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN): "
             f"this needs scope {targets[0].scope}{more}; nothing changed", code=1)
    try:
        failed = quarantine_machines(store, taskcluster, targets, until=until, reason=reason, now=now,
                                     echo=click.echo)
    except redis.RedisError as exc:
        fail(f"Taskcluster changed, but Redis at {mask_url(config.redis_url)} failed: {exc}; the next "
             "poll records it", code=1)
    sys.exit(1 if failed or problems else 0)


@main.command(help="Quarantine machines in Taskcluster (they take no tasks until --until).")
@_selection
@click.option("--until", "until_text", default="7d", show_default=True,
              help="How long: a duration like 12h or 7d.")
@click.option("--reason", required=True, help="Why (Taskcluster shows it as quarantineInfo).")
def quarantine(machines: tuple[str, ...], problem: str | None, datacenter: str | None,
               worker_type: str | None, dry_run: bool, force: bool, until_text: str, reason: str) -> None:
    """Quarantine the chosen machines."""
    from .core.times import parse_duration
    try:
        seconds = parse_duration(until_text)
    except ValueError as exc:
        fail(f"--until: {exc}")
    if seconds <= 0:
        fail("--until: must be longer than zero")
    _act(machines, problem, datacenter, worker_type, dry_run, force,
         seconds=seconds, reason=reason)


@main.command(help="Lift the quarantine of machines in Taskcluster.")
@_selection
def lift(machines: tuple[str, ...], problem: str | None, datacenter: str | None,
         worker_type: str | None, dry_run: bool, force: bool) -> None:
    """Lift the quarantine of the chosen machines (a quarantineUntil of now)."""
    _act(machines, problem, datacenter, worker_type, dry_run, force, seconds=None, reason=None)


@main.command(help="Fill in lastseen, firstseen and the worker type of machines from Taskcluster's "
                   "worker list (lastDateActive is ±30 minutes): only where the stored lastseen is "
                   "older or missing, all or nothing.")
@click.option("--worker-type", "worker_types", multiple=True,
              help="Also this worker type (of each followed provisioner); repeatable.")
@click.option("--dry-run", is_flag=True, help="Read Taskcluster; write nothing.")
def backfill(worker_types: tuple[str, ...], dry_run: bool) -> None:
    """Backfill from worker-manager's listWorkers."""
    from .taskcluster.backfill import backfill_items
    from .core.identifiers import is_identifier
    from .store.machines import load_failure
    from .taskcluster.client import TaskclusterError
    config = load_config()
    for worker_type in worker_types:
        if not is_identifier(worker_type):
            fail(f"--worker-type: {worker_type!r} is not a Taskcluster identifier")
    store = open_store(config)
    try:
        inventory = store.inventory()
    except redis.RedisError as exc:
        fail(f"cannot read Redis at {mask_url(config.redis_url)}: {exc}", code=1)
    types = sorted({worker_type for worker_type in inventory.values() if worker_type} | set(worker_types))
    if not types:
        fail("no worker type to read: load an inventory with worker types, or give --worker-type")
    taskcluster = taskcluster_client(config)
    workers = []
    try:
        for provisioner in config.provisioner_ids:
            for worker_type in types:
                workers.extend(taskcluster.list_workers(provisioner, worker_type))
    except TaskclusterError as exc:
        fail(f"nothing written: {exc}", code=1)
    now = utcnow()
    plan = backfill_items(workers, now)
    read = (f"{plan.workers} workers of {len(types)} worker types read, {plan.without_activity} "
            "without lastDateActive")
    if dry_run:
        click.echo(f"{read}; {len(plan.items)} to write if older; nothing written (dry run)")
        return
    try:
        written, kept = store.backfill(plan.items)
    except redis.RedisError as exc:
        fail(f"Redis at {mask_url(config.redis_url)} {load_failure(exc)}", code=1)
    click.echo(f"{read}: {written} written, {kept} kept because newer")


main.add_command(inventory)

if __name__ == "__main__":
    # `python -m releng_hardware.cli …`: the `releng-hardware` command without installing it
    main()
