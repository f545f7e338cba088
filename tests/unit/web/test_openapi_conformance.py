"""/openapi.json says exactly what the API accepts and answers, checked by schemathesis.

Schemathesis reads the served document and, for every operation, sends the documented
examples, boundary and near-boundary values of every parameter (its coverage phase) and
generated requests, valid and invalid, to the app in-process. Every check is on: a valid
request must not be rejected, an invalid one must not be accepted, and every answer must have
a documented status, content type, headers and body. It runs twice: with a fleet of every
machine shape recorded, and with Redis away (where the data endpoints answer 503).

A new query parameter must be described in releng_hardware/web/openapi.py exactly as the view
parses it (type, pattern, enum, limits); when it is not, this test fails with the request to
reproduce (`curl ...`) and the rule that was broken.
"""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from releng_hardware.core.records import BackfillItem, Quarantine
from releng_hardware.store.machines import Store
from releng_hardware.core.times import format_lastseen
from releng_hardware.web.app import create_app
from tests.conftest import NOW, make_config, record_every_shape
from tests.unit.web.test_openapi import errors

SETTINGS = {
    # bounded and the same on every run: derandomized, nothing replayed from a local database
    "generation": {"max-examples": 40, "deterministic": True, "database": "none",
                   "mode": "all"},  # valid and invalid requests
    "checks": {"enabled": True},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}},
}
# With Redis away the data endpoints answer 503 and /__heartbeat__ 500, as documented: those
# are the expected answers there, not server errors; every other check stays as it is.
REDIS_AWAY = {**SETTINGS, "checks": {"enabled": True, "not_a_server_error": {
    "expected-statuses": ["2xx", "3xx", "4xx", "500", "503"]}}}
HINT = ("/openapi.json and the API disagree on the request above. Describe the parameter or "
        "response exactly in releng_hardware/web/openapi.py (or fix the view when the document is "
        "right); reproduce with the curl line.")


def served_schema(redis_up: bool) -> schemathesis.schemas.BaseSchema:
    """The app's own document, loaded from the app on an in-memory Redis."""
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = Store(redis)
    record_every_shape(store)
    # answers with a quarantine (one with neither reason nor author), a backfilled machine and
    # the Taskcluster poll's state
    store.set_quarantine("mdc2:t-w1064-ms-281", Quarantine(
        format_lastseen(NOW + timedelta(days=1)), "disk errors", "project/releng/ops",
        "releng-hardware/gecko-t-win10-64-hw"))
    store.set_quarantine("mdc1:t-linux64-ms-199", Quarantine(
        format_lastseen(NOW + timedelta(hours=1)), None, None, "releng-hardware/gecko-t-linux-talos"))
    store.backfill([BackfillItem("mdc1:t-linux64-ms-150", NOW - timedelta(minutes=40), None,
                                 "releng-hardware", "gecko-t-linux-talos")])
    store.taskcluster_polled(NOW - timedelta(minutes=20), "worker-manager: HTTP 500")
    store.taskcluster_polled(NOW - timedelta(minutes=25))
    app = create_app(make_config(), redis=redis, clock=lambda: NOW)
    settings = SchemathesisConfig.from_dict(SETTINGS if redis_up else REDIS_AWAY)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=settings)
    server.connected = redis_up
    return schema


with_redis = served_schema(redis_up=True)
without_redis = served_schema(redis_up=False)


def call_and_validate(case: schemathesis.Case) -> None:
    """Send the case to the app and run every check, naming what to fix when one fails."""
    try:
        case.call_and_validate()
    except FailureGroup as failures:
        failures.add_note(HINT)
        raise


@with_redis.parametrize()
def test_the_api_does_what_its_document_says(case):
    call_and_validate(case)


@without_redis.parametrize()
def test_the_api_does_what_its_document_says_while_redis_is_away(case):
    call_and_validate(case)


def test_every_operation_of_the_document_is_exercised(client):
    documented = {f"{method.upper()} {path}"
                  for path, operations in client.get("/openapi.json").get_json()["paths"].items()
                  for method in operations}
    exercised = {result.ok().label for result in with_redis.get_all_operations()}
    # schemathesis leaves out the document it loaded from; test_openapi.py checks that one
    assert exercised == documented - {"GET /openapi.json"}


@pytest.mark.parametrize("path, name, value, valid", [
    ("/", "worker_type", "", True),  # the page's form sends unset filters empty
    ("/", "worker_type", "a b", False),
    ("/machines", "worker_type", "", False),
    ("/summary", "stale_after", "3651d", True),  # was refused as over ten years, undocumented
    ("/summary", "stale_after", "9999999999", False),
    ("/machines", "stale", " 999999999.999999999d ", True),
    ("/machines", "seen_within", "1234567890.5s", False),
    ("/machines", "quarantined", "true", True),
    ("/machines", "quarantined", "yes", False),
    ("/", "quarantined", "", True),
])
def test_document_and_api_agree_on_the_values_first_found_to_differ(client, path, name, value, valid):
    document = client.get("/openapi.json").get_json()
    parameter, = (parameter for parameter in document["paths"][path]["get"]["parameters"]
                  if parameter["name"] == name)
    assert (errors(value, parameter["schema"], document) == []) is valid, "the document"
    assert (client.get(path, query_string={name: value}).status_code != 400) is valid, "the API"
