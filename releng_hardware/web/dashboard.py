"""The dashboard: the page at `/` (the /machines and /summary data as one server-rendered page,
the machines that need attention first, a page at a time) and a page per machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, NamedTuple, Sequence

from flask import Blueprint, Response, render_template, url_for
from werkzeug.exceptions import HTTPException

from .appstate import app_state
from ..core.config import SLOW_MIN_RUNS, WINDOW, Config
from ..views.fleet import (ANY_PROBLEM, MACHINE_FILTERS, MachineQuery, counted_json, select, summary,
                    taskcluster_poll_state)
from ..core.identifiers import is_identifier, split_machine_id
from ..core.params import BadParameter, positive_int_param
from ..core.problems import PROBLEMS, calls_for_attention
from ..core.records import COMPLETED, EXCEPTION, FAILED, LOST, NOT_COUNTED, RUNNING, outcome_code
from .responses import ApiError, answer_redis_errors, collector_paused, query_args
from ..views.labels import default_min_machines, failing_labels
from ..views.reads import IndexNotReady, read_counts, read_fleet, read_machine, read_section_rows
from ..store.machines import Store

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)

REFRESH_SECONDS = 60
# Rows per page: a fleet of 100,000 machines must still open quickly, on a phone too.
PAGE_SIZE = 200
# The page takes exactly the filters of /machines, so its URL less `page` is also an API query.
DASHBOARD_PARAMS = (*MACHINE_FILTERS, "page")
# The page loads nothing from anywhere else: it must work on a laptop without network.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; script-src 'self'; "
                           "img-src 'self'; form-action 'self'; base-uri 'none'; "
                           "frame-ancestors 'none'")


def duration_text(seconds: float) -> str:
    """A duration as the API's parameters write it: 6h, 90m, 2d, 45s."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def relative_age(age_seconds: float | None) -> str:
    """'3h 12m ago': the two largest units, which is all a person reads at a glance."""
    if age_seconds is None:
        return "unknown"
    if age_seconds < 0:
        return "in the future"
    seconds = int(age_seconds)
    if seconds < 60:
        return f"{seconds}s ago"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h ago" if hours else f"{days}d ago"
    if hours:
        return f"{hours}h {minutes}m ago" if minutes else f"{hours}h ago"
    return f"{minutes}m ago"


def absolute_time(lastseen: str | None) -> str:
    """'2026-11-20 14:55:00 UTC' from the stored lastseen (left as is when unreadable)."""
    if not lastseen:
        return ""
    try:
        return datetime.fromisoformat(lastseen).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return lastseen


def choices(values: list[str | None], selected: str | None) -> list[str]:
    """The options of a filter: every value present, plus the selected one; never an empty one."""
    return sorted({value for value in (*values, selected) if value})


def page_url(args: dict[str, str], **changes: str | int | None) -> str:
    """This page's URL with some parameters changed (None removes one); `page` only when given."""
    merged = {**args, **changes}
    return url_for("dashboard.index", **{name: merged[name] for name in DASHBOARD_PARAMS
                                         if merged.get(name) is not None})  # type: ignore[arg-type]


class ProblemHelp(NamedTuple):
    """How the page shows a problem code: a short label, what it means, what to do about it."""

    label: str
    tone: str  # the badge's colour: "down", "failing" or "inventory"
    meaning: str
    action: str


def problem_help(config: Config) -> dict[str, ProblemHelp]:
    """Every problem code the API knows, explained, most urgent first, with the configured
    thresholds."""
    stale_after, hung_after = duration_text(config.stale_after), duration_text(config.hung_after)
    explained = {
        "idle_with_work_waiting": ProblemHelp(
            "work waiting", "down",
            f"Not seen for {stale_after} while its worker type has tasks waiting: it should be "
            "working and is not.",
            "Look at these first: is the machine powered and on the network, is its worker "
            "running? Reboot or reimage it."),
        "lost_mid_task": ProblemHelp(
            "lost mid-task", "down",
            "Its newest run ended claim-expired: the worker stopped reclaiming the task, so the "
            "machine died, rebooted or lost its network in the middle of it.",
            "If it is also stale it is down: power-cycle it. If it comes back and does it again, "
            "suspect the hardware (memory, disk, heat)."),
        "hung_task": ProblemHelp(
            "hung task", "down",
            f"Its newest run has been running for more than {hung_after}.",
            "Open the task's live log: a hung test or a hung machine? Reboot the machine if it "
            "does not answer."),
        "stale": ProblemHelp(
            "stale", "down", f"Not seen taking or ending a task for {stale_after}.",
            "Without work waiting its pool may just be quiet; otherwise check that it is up and "
            "its worker runs."),
        "consecutive_failures": ProblemHelp(
            "failing", "failing",
            f"Its newest {config.failure_streak} counted runs all failed or ended in exception.",
            "If the same tasks pass on other machines this one eats the queue: quarantine it and "
            "read its logs. Failures of tasks that fail on other machines too (a bad push) are not "
            "counted here: they are under Failing on several machines."),
        "fails_where_others_pass": ProblemHelp(
            "fails where others pass", "failing",
            f"At least {config.failure_streak} of its newest {WINDOW} counted runs failed tasks "
            "that passed on other machines within the peer window.",
            "The machine, not the task: quarantine it, read the failing runs' logs and reimage or "
            "repair it."),
        "exceptions": ProblemHelp(
            "exceptions", "failing",
            f"At least {config.exceptions_max} exceptions among its newest {WINDOW} counted runs.",
            "The worker or the machine keeps crashing or rebooting: read the reasons below, then "
            "the worker's logs."),
        "low_success_rate": ProblemHelp(
            "low success", "failing",
            f"Fewer than {config.success_rate_min:.0%} of its newest {WINDOW} completed or failed "
            "runs completed.",
            "A flaky machine: compare it with its pool; quarantine and reimage it if it stays well "
            "below them."),
        "slow": ProblemHelp(
            "slow", "failing",
            f"Its completed runs take at least {config.slow_factor:g} times as long as the same "
            f"tasks on other machines (the median over at least {SLOW_MIN_RUNS} of its newest "
            f"{WINDOW} completed runs).",
            "Check its disk, heat and background load; a slow performance machine also skews the "
            "performance data it reports."),
        "never_seen": ProblemHelp(
            "never seen", "inventory",
            "In the inventory, but never seen taking a task since tracking began.",
            "Check that it was set up and that its worker is configured and started."),
        "not_in_inventory": ProblemHelp(
            "not in inventory", "inventory",
            "Seen taking tasks, but not in the loaded inventory.",
            "Add it to the inventory, or find out why a worker runs under this id."),
    }
    return {code: help for code, help in explained.items() if code in PROBLEMS}


def row_class(machine: dict) -> str:
    """The CSS class that colours a machine's row: silent the longest, then in trouble otherwise."""
    if machine["lastseen"] is None:
        return "never-seen"
    if machine["idle_with_work_waiting"]:
        return "idle-waiting"
    if machine["stale"]:
        return "stale"
    if machine["problems"]:
        return "trouble"
    age = machine["age_seconds"]
    if age is None:
        return "unknown"
    return "fresh" if age <= 3600 else "quiet"


# A run's square in the machine's strip is coloured by what its end says about the machine.
_OUTCOME_CLASS = {COMPLETED: "completed", FAILED: "failed", EXCEPTION: "exception", LOST: "lost",
                  NOT_COUNTED: "not-counted", RUNNING: "running"}


def run_outcome(run: dict) -> str:
    """The outcome class of one of the machine's recent runs."""
    return _OUTCOME_CLASS[outcome_code(run["state"], run["reason_resolved"])]


def span_text(seconds: float) -> str:
    """A length of time as a person reads it: '42m', '3h 5m', '45s'."""
    return relative_age(seconds).removesuffix(" ago")


def precise_span_text(seconds: float) -> str:
    """span_text, with the seconds under 10 minutes: a ratio between two short runs must not
    read '1m, 1.8× the peer median of 1m'."""
    whole = int(seconds)
    if 60 <= whole < 600 and whole % 60:
        return f"{whole // 60}m {whole % 60}s"
    return span_text(seconds)


def run_seconds(run: Mapping[str, Any], now: datetime) -> float | None:
    """How many seconds a run took, or has been running; None when unknown."""
    try:
        started = datetime.fromisoformat(run["started"])
        ended = datetime.fromisoformat(run["resolved"]) if run["resolved"] else now
    except (TypeError, ValueError):
        return None
    return (ended - started).total_seconds()


class Took(NamedTuple):
    """How long a run took, said against its peers when they tell: the text, and the ratio to
    the peer median (None without one)."""

    text: str
    ratio: float | None


def run_took(run: Mapping[str, Any], now: datetime) -> Took:
    """'41m, 2.3× the peer median of 18m' for a completed run whose label has a peer median;
    just its duration otherwise ('4h so far' while running)."""
    seconds = run_seconds(run, now)
    if seconds is None:
        return Took("", None)
    median = run.get("peer_median_seconds")
    code = outcome_code(run["state"], run["reason_resolved"])
    if code == RUNNING:
        return Took(f"{span_text(seconds)} so far", None)
    if code != COMPLETED or not median:
        return Took(span_text(seconds), None)
    ratio = seconds / median
    return Took(f"{precise_span_text(seconds)}, {ratio:.1f}× the peer median of "
                f"{precise_span_text(median)}", ratio)


def _other_machines(count: int) -> str:
    return f"{count} other {'machine' if count == 1 else 'machines'}"


def peer_words(run: Mapping[str, Any]) -> str:
    """A failure's attribution in words, from its peers: 'also failed on 4 other machines' (the
    task's fault), 'passed on 6 other machines' (the machine's); empty when not judged."""
    peers = run.get("peers") or {}
    if run.get("attribution") == "task":
        return f"also failed on {_other_machines(peers.get('failed', 0))}"
    if run.get("attribution") == "machine":
        return f"passed on {_other_machines(peers.get('completed', 0))}"
    return ""


def age_seconds(lastseen: str, now: datetime) -> float | None:
    """Seconds from a stored lastseen to `now`; None when unreadable."""
    try:
        return (now - datetime.fromisoformat(lastseen)).total_seconds()
    except ValueError:
        return None


def needs_attention(machine: Mapping[str, Any]) -> bool:
    """Whether a person on duty should look at this machine: it has a problem besides
    bookkeeping."""
    return calls_for_attention(machine["problems"])


class Section(NamedTuple):
    """A run of rows under one heading: the machines that need attention, or the others."""

    key: str
    title: str
    total: int
    machines: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Pagination:
    """Which slice of the ordered machines a page shows (its number clamped to the last page)."""

    number: int
    count: int
    start: int
    stop: int
    total: int

    @classmethod
    def of(cls, total: int, requested: int, size: int = PAGE_SIZE) -> "Pagination":
        """Page `requested` (from 1) of `total` rows; past the end means the last page."""
        count = max(1, -(-total // size))
        number = min(requested, count)
        start = (number - 1) * size
        return cls(number, count, start, min(start + size, total), total)


def attention_sections(machines: Sequence[Mapping[str, Any]], pagination: Pagination) -> list[Section]:
    """The machines needing attention, then the quarantined ones, then the others, each in the
    query's order, cut to the page.

    A quarantined machine is already in someone's hands: it leaves "Needs attention", so the
    next person on duty does not chase it again.
    """
    attention: list[Mapping[str, Any]] = []
    quarantined: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    for machine in machines:
        if machine["quarantine"] is not None:
            quarantined.append(machine)
        else:
            (attention if needs_attention(machine) else others).append(machine)
    sections, offset = [], 0
    for key, title, group in (("attention", "Needs attention", attention),
                              ("quarantined", "Quarantined", quarantined),
                              ("others", "Everything else", others)):
        shown = group[max(0, pagination.start - offset):max(0, pagination.stop - offset)]
        if shown:
            sections.append(Section(key, title, len(group), shown))
        offset += len(group)
    return sections


class DashboardPage(NamedTuple):
    """What the page shows of the machines: its sections, where it is among the pages, how many
    machines there are, the summary, whether an inventory is loaded."""

    sections: list[Section]
    pagination: Pagination
    total: int
    summary: dict[str, Any]
    inventory: bool


def reads_index(query: MachineQuery) -> bool:
    """Whether the page comes from the machine index: no filter, in the machine order."""
    return not query.filtered and query.sort == "machine"


def _page_from_index(store: Store, config: Config, now: datetime,
                     requested_page: int) -> DashboardPage | None:
    """The page counted from the machine index, its rows read by walking the machine order as far
    as they need (None when further than reads.WALK_BUDGET): the cost of the page, not of the
    fleet."""
    try:
        counts = read_counts(store, config, now)
    except IndexNotReady as exc:
        log.warning("%s: the dashboard counted from every machine judged (read_fleet)", exc)
        return None
    pagination = Pagination.of(counts.total, requested_page)
    sizes = (("attention", "Needs attention", counts.attention),
             ("quarantined", "Quarantined", counts.quarantined),
             ("others", "Everything else", counts.total - counts.attention - counts.quarantined))
    slices, offset = {}, 0
    for key, _, size in sizes:
        slices[key] = slice(max(0, pagination.start - offset), max(0, pagination.stop - offset))
        offset += size
    rows = read_section_rows(store, config, now, counts, **slices)
    if rows is None:
        return None
    sections = [Section(key, title, size, shown)
                for (key, title, size), shown in zip(sizes, rows, strict=True) if shown]
    return DashboardPage(sections, pagination, counts.total, counts.summary, bool(counts.inventory))


def _page_from_fleet(store: Store, config: Config, now: datetime, query: MachineQuery,
                     requested_page: int) -> DashboardPage:
    """The page of any query, from every machine judged, counted, filtered and ordered in the
    light view; only the page's rows are built in full."""
    fleet = read_fleet(store, config, now, view=counted_json)
    # the machines that should exist but never showed up belong on the page for the people on
    # duty
    machines = fleet.machines + fleet.never_seen
    shown = select(machines, query)
    pagination = Pagination.of(len(shown), requested_page)
    sections = [section._replace(machines=fleet.in_full(section.machines))
                for section in attention_sections(shown, pagination)]
    return DashboardPage(sections, pagination, len(machines),
                         summary(machines, fleet.pending, config.stale_after, fleet.inventory),
                         bool(fleet.inventory))


@bp.get("/")
def index() -> Response:
    """The dashboard: summary, filters, and the machines they select, those needing attention first."""
    args = query_args(DASHBOARD_PARAMS, drop_empty=True)
    requested_page = positive_int_param("page", args.pop("page")) if "page" in args else 1
    query = MachineQuery.from_args(args)
    app = app_state()
    config, now = app.config, app.clock()
    with collector_paused():
        page = (_page_from_index(app.store, config, now, requested_page)
                if reads_index(query) else None)
        if page is None:
            page = _page_from_fleet(app.store, config, now, query, requested_page)
        sections, pagination, total, fleet_summary, inventory_loaded = page
        poll = taskcluster_poll_state(app.store.taskcluster_status(), now, config.taskcluster_poll)
        # every datacenter and worker type present heads a group of the summary
        groups = fleet_summary["groups"]
        datacenters = choices([group["datacenter"] for group in groups], query.datacenter)
        worker_types = choices([group["worker_type"] for group in groups], query.worker_type)
        # the same labels as /labels with the page's worker type: what the task breaks, so the
        # people on duty do not chase the machines it fails on
        labels = failing_labels(app.store.failing_labels(now), now,
                                config.peer_window, config.taskcluster_root_url,
                                min_machines=default_min_machines(config.peer_failures),
                                worker_type=query.worker_type)
    html = render_template(
        "dashboard.html",
        args=args,
        query=query,
        sections=sections,
        pagination=pagination,
        total=total,
        summary=fleet_summary,
        inventory=inventory_loaded,  # its columns only when there is one
        poll=poll,
        datacenters=datacenters,
        worker_types=worker_types,
        problems=problem_help(config),
        any_problem=ANY_PROBLEM,
        labels=labels,
        labels_url=url_for("labels.labels", worker_type=query.worker_type),
        peer_failures=config.peer_failures,
        peer_window=duration_text(config.peer_window),
        age=lambda lastseen: age_seconds(lastseen, now),
        stale_value=args.get("stale", duration_text(config.stale_after)),
        stale_after=duration_text(config.stale_after),
        api_url=url_for("api.machines", **{**args, "include": "never_seen"}),  # type: ignore[arg-type]
        page_url=lambda **changes: page_url(args, **changes),
        now=now,
        refresh=REFRESH_SECONDS,
    )
    return _html(html)


@bp.get("/machine/<machine_id>")
def machine_page(machine_id: str) -> Response:
    """One machine: its problems explained, its recent runs, when it was seen, its counters."""
    query_args(())
    datacenter, hostname = split_machine_id(machine_id)
    if not (is_identifier(datacenter) and is_identifier(hostname)):
        raise ApiError(400, "bad_machine_id",
                       "a machine page is /machine/<datacenter>:<hostname>, made of letters, "
                       "digits, - and _")
    app = app_state()
    config, now, store = app.config, app.clock(), app.store
    record = store.machine(machine_id)
    if record is None:
        raise ApiError(404, "not_found", f"{machine_id} has not been seen since tracking began")
    html = render_template(
        "machine.html",
        machine=read_machine(store, config, record, now),
        problems=problem_help(config),
        stale_after=duration_text(config.stale_after),
        api_url=url_for("api.machine", machine_id=machine_id),
        took=lambda run: run_took(run, now),
        peer_words=peer_words,
        slow_factor=config.slow_factor,
        now=now,
        refresh=REFRESH_SECONDS,
    )
    return _html(html)


@bp.app_template_filter("relative_age")
def _relative_age_filter(age_seconds: float | None) -> str:
    return relative_age(age_seconds)


@bp.app_template_filter("absolute_time")
def _absolute_time_filter(lastseen: str | None) -> str:
    return absolute_time(lastseen)


@bp.app_template_filter("row_class")
def _row_class_filter(machine: dict) -> str:
    return row_class(machine)


@bp.app_template_filter("run_outcome")
def _run_outcome_filter(run: dict) -> str:
    return run_outcome(run)


@bp.errorhandler(BadParameter)
def _bad_parameter(exc: BadParameter) -> Response:
    return _error_page(400, "Bad request", str(exc))


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error_page(exc.status, "Not found" if exc.status == 404 else "Bad request", exc.message)


def _redis_down(status: int) -> Response:
    # The error page refreshes too, so a page left open recovers by itself.
    return _error_page(status, "Data store unavailable",
                       "Redis is not answering; this page retries every minute.",
                       refresh=REFRESH_SECONDS)


answer_redis_errors(bp, _redis_down)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _error_page(exc.code or 500, exc.name or "Error", exc.description or "")


def _error_page(status: int, title: str, message: str, refresh: int | None = None) -> Response:
    html = render_template("error.html", status=status, title=title, message=message,
                           refresh=refresh)
    return _html(html, status)


def _html(html: str, status: int = 200) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response

