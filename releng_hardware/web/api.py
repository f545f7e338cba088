"""The JSON and CSV API: /machines, /machines/<id> and /summary. Views parse, read, serialise."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from operator import itemgetter
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, request

from .appstate import app_state
from ..core.config import Config
from ..views import derived
from ..views.fields import CSV_FIELDS
from ..views.fleet import (MACHINE_FILTERS, MachineQuery, csv_columns, csv_rows, is_poll,
                    lastseen_machines, lastseen_rows, machine_view, needs_records, parse_fields,
                    poll_machines, project, select, taskcluster_poll_state)
from ..core.identifiers import MAX_MACHINE_REF, is_machine_ref
from ..core.params import cursor_param, duration_param, encode_cursor, limit_param, optional_param
from .responses import (DEFAULT_LIMIT, NEXT_CURSOR_HEADER, ApiError, collector_paused, conditional,
                        digest, json_response, query_args, wants_csv)
from ..views.reads import (Page, read_fleet, read_machine, read_machines_from_views, read_page,
                       read_summary)
from ..store.machines import Store

bp = Blueprint("api", __name__)

# A page of /machines: at most `limit` machines, after the place `cursor` stands for.
PAGE_PARAMS = ("limit", "cursor")
MACHINE_PARAMS = frozenset({*MACHINE_FILTERS, "fields", "format", *PAGE_PARAMS})
SUMMARY_PARAMS = frozenset({"stale_after"})


@bp.get("/machines")
def machines() -> Response:
    """Every machine seen, filtered and sorted as asked, as JSON or CSV, with the fields asked."""
    args = query_args(MACHINE_PARAMS)
    query = MachineQuery.from_args({name: args[name] for name in MACHINE_FILTERS if name in args})
    fields = parse_fields(args["fields"]) if "fields" in args else None
    as_csv = wants_csv(args.get("format"))
    paged = "limit" in args or "cursor" in args
    limit = optional_param(args, "limit", limit_param, DEFAULT_LIMIT)
    after = optional_param(args, "cursor", cursor_param, None)
    app = app_state()
    store, now = app.store, app.clock()
    data_version = store.data_version()  # before the data: a newer ETag never labels older data
    if paged:
        page = read_page(store, app.config, now, query, limit, after, view=machine_view(fields))
        return _machines_page(page, args, fields, as_csv, data_version)
    with collector_paused():
        return _machines(store, app.config, now, query, fields, as_csv, data_version)


def _machines_page(page: Page, args: Mapping[str, str], fields: tuple[str, ...] | None,
                   wants_csv: bool, data_version: int) -> Response:
    """A page as the unpaged answer shows machines, with where the next page starts in its
    headers: X-Next-Cursor and a Link to it (rel="next"), absent on the last page."""
    selected: Sequence[Mapping[str, Any]] = page.machines
    # which machines, their problems and the next place: what time or data change here
    state = digest("\n".join((*(f"{machine['id']} {' '.join(machine['problems'])}"
                                for machine in selected), page.next_place or "")).encode())
    if fields is not None:
        selected = project(selected, fields)
    etag = machines_etag(data_version, state)
    if wants_csv:
        response = conditional(csv_text(selected, fields or CSV_FIELDS).encode(), "text/csv", etag,
                               weak=True)
    else:
        response = conditional(orjson.dumps(selected), "application/json", etag, weak=True)
    if page.next_place is not None:
        cursor = encode_cursor(page.next_place)
        response.headers[NEXT_CURSOR_HEADER] = cursor
        response.headers["Link"] = (f'<{request.path}?{urlencode({**args, "cursor": cursor})}>; '
                                    'rel="next"')
    return response


def _machines(store: Store, config: Config, now: datetime, query: MachineQuery,
              fields: tuple[str, ...] | None, wants_csv: bool, data_version: int) -> Response:
    selected: Sequence[Mapping[str, Any]]
    if fields is None and not wants_csv and _from_views(query):
        spliced = read_machines_from_views(store, config, now, reverse=query.sort.startswith("-"))
        if spliced is not None:
            return conditional(spliced.body, "application/json",
                               machines_etag(data_version, flags_of(spliced.problems)), weak=True)
    if fields is not None and is_poll(query, fields):
        selected = poll_machines(store.lastseen_by_machine(), now, query)
        state = ""  # without problems or a time filter only the data changes this answer
    elif fields is not None and not needs_records(query, fields):
        rows = lastseen_rows(store.lastseen_by_machine(), now, query, "age_seconds" in fields)
        selected = lastseen_machines(rows, fields)
        # a time filter changes the selection as time passes, without a data change
        state = ("" if query.stale is None and query.seen_within is None
                 else digest("\n".join(row[2] for row in rows).encode()))
    else:
        fleet = read_fleet(store, config, now, with_never_seen=query.include_never_seen,
                           view=machine_view(fields))
        selected = select(fleet.machines + fleet.never_seen, query)
        state = problem_flags(selected)
        if fields is not None:
            selected = project(selected, fields)
    etag = machines_etag(data_version, state)
    if wants_csv:
        return conditional(csv_text(selected, fields or CSV_FIELDS).encode(), "text/csv", etag,
                           weak=True)
    return conditional(orjson.dumps(selected), "application/json", etag, weak=True)


def _from_views(query: MachineQuery) -> bool:
    """Whether the machine index's views answer the query: every machine seen, by hostname."""
    return (not query.filtered and not query.include_never_seen
            and query.sort.lstrip("-") == "machine")


@bp.get("/machines/<path:machine_id>")
def machine(machine_id: str) -> Response:
    """One machine by `<dc>:<host>`, or by hostname when that is unique."""
    query_args(())
    if len(machine_id) > MAX_MACHINE_REF or not is_machine_ref(machine_id):
        raise ApiError(400, "bad_machine_id",
                       "a machine id is <datacenter>:<hostname> or a hostname, "
                       "made of letters, digits, - and _")
    app = app_state()
    store, now = app.store, app.clock()
    if ":" not in machine_id:
        candidates = store.machine_ids_for_hostname(machine_id)
        if not candidates:
            raise _not_seen(machine_id, bool(store.inventory_lists(machine_id)))
        if len(candidates) > 1:
            raise ApiError(409, "ambiguous_hostname",
                           f"{machine_id} exists in several datacenters", candidates=candidates)
        machine_id = candidates[0]
    # the machine, its runs shown and all they are judged by: one round trip
    read = store.machine_detail(machine_id, now, runs=app.config.recent_tasks)
    if read.record is None:
        raise _not_seen(machine_id, bool(read.in_inventory))
    return json_response(read_machine(store, app.config, read, now))


def _not_seen(machine_ref: str, expected: bool) -> ApiError:
    """The 404 of a machine never seen, saying whether the inventory expects it."""
    return ApiError(404, "not_found", f"{machine_ref}{' is in the inventory but' if expected else ''} "
                                      "has not been seen since tracking began", in_inventory=expected)


@bp.get("/summary")
def fleet_summary() -> Response:
    """Counts per datacenter, provisioner and worker type."""
    args = query_args(SUMMARY_PARAMS)
    app = app_state()
    config = app.config
    stale_after = optional_param(args, "stale_after", duration_param, config.stale_after)
    now = app.clock()
    with collector_paused():
        counts = read_summary(app.store, config, now, stale_after)
        # how old the quarantines counted are
        counts["taskcluster"] = taskcluster_poll_state(app.store.taskcluster_status(), now,
                                                       config.taskcluster_poll)
        return conditional(orjson.dumps(counts), "application/json")


def machines_etag(version: int, state: str) -> str:
    """Changes with the data, the query, `state` (what time changes in the answer) and the
    release (derived.release_digest): a new release's bytes never answer 304 to an old one's tag.

    age_seconds grows every second; a weak ETag lets a poller keep its copy
    (ages follow from lastseen and the Date header) until something real changes,
    such as a machine going stale or its task becoming hung as time passes.
    """
    source = (f"{version}|{request.query_string.decode('latin-1')}|{request.accept_mimetypes}|{state}"
              f"|{derived.release_digest()}")
    return digest(source.encode())


def problem_flags(machines: Iterable[Mapping[str, Any]]) -> str:
    """Each machine's problems, which change as time passes."""
    return flags_of(map(itemgetter("problems"), machines))


def flags_of(problems: Iterable[Sequence[str]]) -> str:
    """problem_flags of machines with these problems, in order."""
    return "|".join(map(" ".join, problems))


def csv_text(machines: Iterable[Mapping[str, Any]], fields: Sequence[str] = CSV_FIELDS) -> str:
    """The machines as CSV with a header row, one column per field (several for some)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_columns(fields))
    writer.writerows(csv_rows(machines, fields))
    return out.getvalue()
