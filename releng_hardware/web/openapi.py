"""`/openapi.json`: the OpenAPI 3.1 description of every endpoint, built from the code's constants."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .. import __version__
from ..views.fields import FIELDS, LAST_TASK_SCHEMA, MACHINE_FIELDS, STATES
from ..views.fleet import (BOOLEANS, CSV_COLUMNS, INCLUDES, PROBLEM_FILTERS, SORT_KEYS, SUMMARY_COUNTS,
                    TASKCLUSTER_POLLS_LATE)
from ..views.metric_names import (EXPOSED_FAMILIES, LISTENER_MESSAGES_TOTAL, MACHINE_PROBLEMS,
                                  TASKCLUSTER_POLL_OUTCOMES, TASKCLUSTER_POLLS_TOTAL)
from ..core.problems import PROBLEMS
from ..core.identifiers import IDENTIFIER, MACHINE_REF, MAX_MACHINE_REF
from ..views.labels import LABEL_FIELDS
from ..core.params import CURSOR, LIMIT, MAX_LIMIT, POSITIVE_INT
from ..store.machines import LISTENER_COUNTERS
from ..core.times import DURATION_PATTERN
from .responses import DEFAULT_LIMIT, MAX_URL_LENGTH, NEXT_CURSOR_HEADER, json_response
from ..views.reads import SCAN_BUDGET

bp = Blueprint("openapi", __name__)

IDENTIFIER_PATTERN = f"^{IDENTIFIER}$"
_FIELD = f"(?:{'|'.join(MACHINE_FIELDS)})"
FIELDS_PATTERN = f"^ *{_FIELD} *(?:, *{_FIELD} *)*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = headers
    return response


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _nullable(type_name: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_name, "null"], **extra}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "schema": {"type": "string"}}}
REDIS_DOWN = _error("Redis is not answering; retry after a few seconds", RETRY_AFTER)
ETAG = {"ETag": {"description": "validator of the body (weak where ages alone change); "
                                "send it back in If-None-Match",
                 "schema": {"type": "string"}}}
NOT_MODIFIED = {"description": "the body is unchanged since the ETag given in If-None-Match",
                "headers": ETAG}
# A paged answer's way on; both absent on the last page.
NEXT_PAGE = {
    NEXT_CURSOR_HEADER: {"description": "the cursor of the next page (with limit or cursor "
                                     "only): send it back as `cursor`", "required": False,
                         "schema": {
                                         "type": "string", "pattern": f"^{CURSOR.pattern}$"}},
    "Link": {"description": 'the next page\'s URL, rel="next" (RFC 8288), with limit or '
                            "cursor only", "required": False, "schema": {"type": "string"}},
}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "an ETag of an earlier response; answered 304 when still current",
                 "schema": {"type": "string"}}


def _machine_path(pattern: str, *, hostname: bool) -> dict[str, Any]:
    """The `machine_id` path parameter: an id matching `pattern`, or also a bare hostname."""
    examples: dict[str, Any] = {"id": {"value": "mdc1:t-linux64-ms-100"}}
    if hostname:
        examples["hostname"] = {"value": "t-linux64-ms-100"}
    return {"name": "machine_id", "in": "path", "required": True,
            "schema": {"type": "string", "maxLength": MAX_MACHINE_REF, "pattern": f"^{pattern}$"},
            "examples": examples}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


DURATION = {"type": "string", "pattern": DURATION_PATTERN,
            "description": "a duration: seconds, or a number with s, m, h or d "
                           "(at most nine digits on each side of the point)",
            "examples": ["90", "90s", "15m", "6h", "2d"]}


MACHINE_QUERY = [
    _query("datacenter", "only machines of this datacenter (Taskcluster worker group)",
           {"type": "string", "pattern": IDENTIFIER_PATTERN}),
    _query("worker_type", "only machines whose last task was for this worker type",
           {"type": "string", "pattern": IDENTIFIER_PATTERN}),
    _query("provisioner", "only machines whose last task was for this provisioner",
           {"type": "string", "pattern": IDENTIFIER_PATTERN}),
    _query("state", "only machines whose last task is in this state",
           {"type": "string", "enum": list(STATES)}),
    _query("stale", "only machines not seen for at least this long", DURATION),
    _query("seen_within", "only machines seen within this long", DURATION),
    _query("problem", "only machines with this problem, or with any problem (any); never_seen "
                      "and any imply include=never_seen",
           {"type": "string", "enum": list(PROBLEM_FILTERS)}),
    _query("quarantined", "true: only machines quarantined in Taskcluster now (as last polled); "
                          "false: only the others", {"type": "string", "enum": list(BOOLEANS)}),
    _query("sort", "order: by last seen (oldest first), -lastseen (newest first), hostname "
                   "(default) or -machine", {"type": "string", "enum": list(SORT_KEYS),
                                             "default": "machine"}),
    _query("include", "never_seen: add the inventory's machines that have not been seen since "
                      "tracking began (lastseen null; having no age, they are left out by stale "
                      "and seen_within, and come first oldest first)",
           {"type": "string", "enum": list(INCLUDES)}),
]
PAGE_QUERY = [
    _query("limit", f"at most this many machines (1 to {MAX_LIMIT}), a page in the order "
                    "asked; the X-Next-Cursor and Link headers lead to the next page. With "
                    "sort=machine or -machine and no never-seen machine asked for, a page "
                    f"reads only the machines it examines (at most {SCAN_BUDGET}), so a "
                    "filtered page may hold fewer than limit, even none, and still have a "
                    "next one; otherwise each page reads the whole fleet",
           {"type": "string", "pattern": f"^(?:{LIMIT.pattern})$",
            "examples": ["500"]}),
    _query("cursor", "where to go on: the X-Next-Cursor of the page before (opaque; a page "
                     f"of {DEFAULT_LIMIT} when limit is not given). Machines added behind it "
                     "since are not shown, machines gone are not; none is shown twice",
           {"type": "string", "pattern": f"^{CURSOR.pattern}$"}),
]
# What a count of /summary means, where its name does not say it all.
COUNT_NOTES = {
    "total": "machines seen",
    "expected": "machines in the inventory (0 when none is loaded)",
    "never_seen": "machines in the inventory not seen since tracking began",
    "quarantined": "machines quarantined in Taskcluster now (as last polled), never seen ones "
                   "included",
}
CHECK_STATUS = {"type": "string", "enum": ["ok", "warning", "error"]}
# The Taskcluster poll's state, in /summary and in the heartbeat's details.
TASKCLUSTER_POLL_PROPERTIES: dict[str, Any] = {
    "polling": {"type": "boolean", "description": "false when TASKCLUSTER_POLL is 0"},
    "last_good_poll_at": _nullable("string", description="the last complete poll (UTC); null "
                                                         "when none"),
    "age_seconds": _nullable("number", description="now - last_good_poll_at: how old the "
                                                   "quarantines are; null when never polled "
                                                   "or polling is off"),
    "consecutive_failures": {"type": "integer", "minimum": 0,
                             "description": "failed polls since the last good one"},
}


def _counts(*names: str) -> dict[str, Any]:
    return {name: {"type": "integer", "minimum": 0,
                   **({"description": COUNT_NOTES[name]} if name in COUNT_NOTES else {})}
            for name in names}


def _or_empty(parameter: dict[str, Any]) -> dict[str, Any]:
    # the dashboard's form submits an unselected <select> as `name=`, which means "any"
    return {**parameter, "schema": {"anyOf": [parameter["schema"], {
        "const": "", "description": "empty: any (what the page's own form sends when unset)"}]}}


DASHBOARD_QUERY = [_or_empty(parameter) for parameter in (
    *MACHINE_QUERY,
    _query("page", "which page of the machines to show (the last one when past it)",
           {"type": "string", "pattern": f"^{POSITIVE_INT.pattern}$", "default": "1",
            "description": "a whole number from 1"}),
)]


PROBLEM_COUNTS = {
    "type": "object",
    "description": "per problem code, the number of machines that have it",
    "required": list(PROBLEMS),
    "properties": {code: {"type": "integer", "minimum": 0} for code in PROBLEMS},
    "additionalProperties": False,
}


def _machine_schema(*, detail: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(MACHINE_FIELDS),
        "properties": {field.name: field.detail_schema if detail and field.detail_schema
                       else field.schema for field in FIELDS},
        "additionalProperties": False,
    }
    if detail:
        schema["required"].append("recent_tasks")
        schema["properties"]["recent_tasks"] = {
            "type": "array", "items": _ref("RecentTask"),
            "description": "the newest runs, newest first by resolved, else started; "
                           "at most RECENT_TASKS"}
    return schema


def _schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "description": "every error of the JSON endpoints",
            "required": ["error", "message", "status"],
            "properties": {
                "error": {"type": "string", "description": "a stable snake_case code"},
                "message": {"type": "string", "description": "what went wrong, for people"},
                "status": {"type": "integer", "description": "the HTTP status repeated"},
                "parameter": {"type": "string", "description": "the query parameter at fault"},
                "allowed": {"type": "array", "items": {"type": "string"},
                            "description": "the parameters the endpoint takes"},
                "candidates": {"type": "array", "items": {"type": "string"},
                               "description": "machine ids sharing the hostname (409)"},
                "in_inventory": {"type": "boolean",
                                 "description": "a machine never seen (404): whether the "
                                                "inventory expects it"},
            },
            "additionalProperties": False,
        },
        "LastTask": LAST_TASK_SCHEMA,
        "Machine": _machine_schema(detail=False),
        "MachineDetail": _machine_schema(detail=True),
        "MachineFields": {
            "type": "object",
            "description": "a machine with only the fields asked for with `fields`",
            "properties": _machine_schema(detail=False)["properties"],
            "additionalProperties": False,
        },
        "RecentTask": {
            "type": "object",
            "required": ["task_id", "run_id", "state", "reason_resolved", "started", "resolved",
                         "url", "label", "attribution", "peers", "peer_median_seconds"],
            "properties": {
                "task_id": {"type": "string"},
                "run_id": {"type": "integer", "minimum": 0},
                "state": {"type": "string", "enum": list(STATES)},
                "reason_resolved": _nullable("string", description="null while running"),
                "started": _nullable("string", description="when the run started (UTC), "
                                                          "to the millisecond"),
                "resolved": _nullable("string", description="when it ended (UTC); null while "
                                                           "running"),
                "url": {"type": "string", "description": "the run in the Taskcluster UI"},
                "label": _nullable("string", description="the task's tags.label; null when none"),
                "attribution": {"enum": ["task", "machine", None], "description": (
                    "a failed or counted-exception run: \"task\" when PEER_FAILURES other machines "
                    "failed a peer run (the rules skip it), \"machine\" when another completed "
                    "one; null otherwise")},
                "peers": {"type": ["object", "null"], "description": (
                    "distinct other machines with a failed (or counted exception) and with a "
                    "completed run of the label within PEER_WINDOW; null without a label"),
                    "required": ["failed", "completed"], "additionalProperties": False,
                    "properties": {"failed": {"type": "integer", "minimum": 0},
                                   "completed": {"type": "integer", "minimum": 0}}},
                "peer_median_seconds": _nullable("number", description=(
                    "a completed run's peers' median duration, with at least 3 of them")),
            },
            "additionalProperties": False,
        },
        "Label": {
            "type": "object",
            "required": ["label", "worker_types", "machines_failed", "machines_completed",
                         "failed_runs", "completed_runs", "last_failure", "last_failure_url"],
            "properties": {
                "label": {"type": "string", "description": "the task's tags.label"},
                "worker_types": {"type": "array", "items": {"type": "string"},
                                 "description": "sorted"},
                "machines_failed": {"type": "integer", "minimum": 1},
                "machines_completed": {"type": "integer", "minimum": 0},
                "failed_runs": {"type": "integer", "minimum": 1},
                "completed_runs": {"type": "integer", "minimum": 0},
                "last_failure": {"type": "string", "description": "the lastseen format (UTC)"},
                "last_failure_url": {"type": "string",
                                     "description": "the run in the Taskcluster UI"},
            },
            "additionalProperties": False,
        },
        "SummaryGroup": {
            "type": "object",
            "required": ["datacenter", "worker_type", "provisioner", *SUMMARY_COUNTS,
                         "pending_tasks", "problems"],
            "properties": {
                "datacenter": {"type": "string"},
                "worker_type": _nullable("string"),
                "provisioner": _nullable("string"),
                **_counts(*SUMMARY_COUNTS, "pending_tasks"),
                "problems": PROBLEM_COUNTS,
            },
            "additionalProperties": False,
        },
        "Summary": {
            "type": "object",
            "required": ["stale_after_seconds", "totals", "groups", "pending_tasks",
                         "taskcluster"],
            "properties": {
                "stale_after_seconds": {"type": "number"},
                "totals": {
                    "type": "object",
                    "required": [*SUMMARY_COUNTS, "problems"],
                    "properties": {
                        **_counts(*SUMMARY_COUNTS),
                        "problems": PROBLEM_COUNTS,
                    },
                    "additionalProperties": False,
                },
                "groups": {"type": "array", "items": _ref("SummaryGroup")},
                "taskcluster": {
                    "type": "object",
                    "description": "the listener's Taskcluster poll, which the quarantines "
                                   "come from",
                    "required": list(TASKCLUSTER_POLL_PROPERTIES),
                    "properties": TASKCLUSTER_POLL_PROPERTIES,
                    "additionalProperties": False,
                },
                "pending_tasks": {
                    "type": "object",
                    "description": "tasks waiting per <provisioner>/<workerType>",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            },
            "additionalProperties": False,
        },
        "Heartbeat": {
            "type": "object",
            "required": ["status", "checks", "details"],
            "properties": {
                "status": CHECK_STATUS,
                "checks": {
                    "type": "object",
                    "description": "redis; listener and taskcluster while Redis answers",
                    "properties": {
                        "redis": CHECK_STATUS, "listener": CHECK_STATUS,
                        "taskcluster": {**CHECK_STATUS, "description": (
                            "never an error: a warning when the last good poll is older "
                            f"than {TASKCLUSTER_POLLS_LATE} x TASKCLUSTER_POLL, or never "
                            "happened while polling is on; ok with a note when "
                            "TASKCLUSTER_POLL is 0")},
                    },
                    "additionalProperties": CHECK_STATUS},
                "details": {
                    "type": "object",
                    "properties": {"taskcluster": {
                        "type": "object",
                        "required": [*TASKCLUSTER_POLL_PROPERTIES, "last_error", "last_error_at"],
                        "properties": {
                            **TASKCLUSTER_POLL_PROPERTIES,
                            "last_error": _nullable("string", description="the last failed "
                                                                          "poll, one line"),
                            "last_error_at": _nullable("string"),
                            "note": {"type": "string"},
                            "problem": {"type": "string"},
                        },
                        "additionalProperties": False,
                    }},
                },
            },
            "additionalProperties": False,
        },
        "Version": {
            "type": "object",
            "required": ["source", "version", "commit", "build"],
            "properties": {name: {"type": "string"}
                           for name in ("source", "version", "commit", "build")},
        },
    }


# The labels whose values the code fixes, which the document lists per family.
METRIC_LABELS = {MACHINE_PROBLEMS: ("problem", PROBLEMS),
                 LISTENER_MESSAGES_TOTAL: ("outcome", LISTENER_COUNTERS),
                 TASKCLUSTER_POLLS_TOTAL: ("outcome", TASKCLUSTER_POLL_OUTCOMES)}


def _family(name: str) -> str:
    if name not in METRIC_LABELS:
        return name
    label, values = METRIC_LABELS[name]
    return f"{name} ({label}: {', '.join(values)})"


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service."""
    csv_header = ",".join(CSV_COLUMNS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "releng-hardware",
            "version": __version__,
            "description": "When each Taskcluster hardware machine was last seen doing work. "
                           "Read-only; JSON endpoints allow any origin. A URL longer than "
                           f"{MAX_URL_LENGTH} characters is answered 414 on every path.",
        },
        "paths": {
            "/machines": {"get": {
                "summary": "Machines matching every filter given",
                "parameters": [*MACHINE_QUERY,
                               _query("fields", "only these fields of each machine, "
                                                "separated by commas (default: every field); "
                                                "in CSV, last_task and counts are several columns",
                                      {"type": "string", "pattern": FIELDS_PATTERN,
                                       "examples": ["machine,datacenter,lastseen"]}),
                               _query("format", "json (default) or csv; Accept: text/csv works too",
                                      {"type": "string", "enum": ["json", "csv"]}),
                               *PAGE_QUERY, IF_NONE_MATCH],
                "responses": {
                    "200": {
                        "description": "the machines, in the order asked; with limit or "
                                       "cursor, one page of them",
                        "headers": {**ETAG, **NEXT_PAGE},
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": {
                                "anyOf": [_ref("Machine"), _ref("MachineFields")]}}},
                            "text/csv": {
                                "schema": {"type": "string",
                                           "description": f"CRLF lines; columns {csv_header}, "
                                                          "or those of the fields asked"},
                                "example": csv_header + "\r\n",
                            },
                        },
                    },
                    "304": NOT_MODIFIED,
                    "400": _error("a query parameter is unknown, repeated or invalid"),
                    "503": REDIS_DOWN,
                },
            }},
            "/machines/{machine_id}": {"get": {
                "summary": "One machine, by <datacenter>:<hostname> or by a unique hostname",
                "parameters": [_machine_path(MACHINE_REF, hostname=True)],
                "responses": {
                    "200": _json(_ref("MachineDetail"), "the machine and its recent tasks"),
                    "400": _error("not a machine id or hostname"),
                    "404": _error("never seen since tracking began; `in_inventory` says whether "
                                  "the inventory expects it"),
                    "409": _error("the hostname exists in several datacenters; "
                                  "`candidates` lists their ids"),
                    "503": REDIS_DOWN,
                },
            }},
            "/summary": {"get": {
                "summary": "Counts per datacenter x worker type, and pending tasks per worker type",
                "parameters": [
                    _query("stale_after", "stale threshold for this request (default STALE_AFTER)",
                           DURATION),
                    IF_NONE_MATCH,
                ],
                "responses": {
                    "200": {**_json(_ref("Summary"), "the summary"), "headers": ETAG},
                    "304": NOT_MODIFIED,
                    "400": _error("a query parameter is unknown, repeated or invalid"),
                    "503": REDIS_DOWN,
                },
            }},
            "/labels": {"get": {
                "summary": "The task labels that failed on more than PEER_FAILURES distinct "
                           "machines within PEER_WINDOW: broken in the task, not the machines; "
                           "most machines first, then by label",
                "parameters": [
                    _query("worker_type", "only this worker type's runs",
                           {"type": "string", "pattern": IDENTIFIER_PATTERN}),
                    _query("min_machines", "fewest distinct machines failing "
                                           "(default PEER_FAILURES + 1)",
                           {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}),
                    _query("format", "json (default) or csv; Accept: text/csv works too",
                           {"type": "string", "enum": ["json", "csv"]}),
                    IF_NONE_MATCH,
                ],
                "responses": {
                    "200": {"description": "the labels", "headers": ETAG, "content": {
                        "application/json": {"schema": {"type": "array",
                                                        "items": _ref("Label")}},
                        "text/csv": {"schema": {"type": "string"},
                                     "example": ",".join(LABEL_FIELDS) + "\r\n"}}},
                    "304": NOT_MODIFIED,
                    "400": _error("a query parameter is unknown, repeated or invalid"),
                    "503": REDIS_DOWN,
                },
            }},
            "/": {"get": {
                "summary": "The dashboard page; takes the filters of /machines except format, "
                           "shows the machines needing attention first, a page at a time, "
                           "and always shows the inventory's never-seen machines",
                "parameters": DASHBOARD_QUERY,
                "responses": {
                    "200": _html("the dashboard"),
                    "400": _html("a query parameter is unknown, repeated or invalid"),
                    "503": {**_html("Redis is not answering; the page retries by itself"),
                            "headers": RETRY_AFTER},
                },
            }},
            "/machine/{machine_id}": {"get": {
                "summary": "The page of one machine",
                "parameters": [_machine_path(f"{IDENTIFIER}:{IDENTIFIER}", hostname=False)],
                "responses": {
                    "200": _html("the machine's page"),
                    "400": _html("not <datacenter>:<hostname>, or a query parameter given"),
                    "404": _html("never seen since tracking began"),
                    "503": {**_html("Redis is not answering; the page retries by itself"),
                            "headers": RETRY_AFTER},
                },
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics of the fleet and the listener",
                "description": f"Families: {', '.join(map(_family, EXPOSED_FAMILIES))}.",
                "responses": {
                    "200": {"description": "text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "503": REDIS_DOWN,
                },
            }},
            "/__heartbeat__": {"get": {
                "summary": "Health of Redis, the listener and its Taskcluster poll (Dockerflow)",
                "responses": {
                    "200": _json(_ref("Heartbeat"), "healthy, perhaps with warnings"),
                    "500": _json(_ref("Heartbeat"), "Redis or the listener is failing"),
                },
            }},
            "/__lbheartbeat__": {"get": {
                "summary": "The process answers (Dockerflow); never touches Redis",
                "responses": {"200": _json({
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"const": "ok"}},
                    "additionalProperties": False}, "alive")},
            }},
            "/__version__": {"get": {
                "summary": "What is deployed (Dockerflow)",
                "responses": {"200": _json(_ref("Version"), "source, version, commit and build")},
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": _schemas()},
    }


@bp.get("/openapi.json")
def document() -> Response:
    """The OpenAPI document as JSON."""
    return json_response(build_document())
