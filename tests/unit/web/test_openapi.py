"""`/openapi.json` describes every route, and the real responses match what it says."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from releng_hardware.web.dashboard import DASHBOARD_PARAMS
from releng_hardware.views.fleet import csv_columns, parse_fields
from releng_hardware.web.api import MACHINE_PARAMS
from tests.conftest import record_every_shape

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}

# -- a validator for the part of JSON Schema 2020-12 the document uses ----------

ANNOTATIONS = {"description", "examples", "default", "title"}
ASSERTIONS = {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum",
              "const", "pattern", "minimum", "maxLength", "anyOf"}
TYPES = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}


def resolve(document: dict, ref: str) -> dict:
    """The schema a local `#/...` reference points to."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def errors(value: Any, schema: dict, document: dict, where: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (an empty list when it conforms)."""
    unknown = set(schema) - ASSERTIONS - ANNOTATIONS
    assert not unknown, f"the validator does not check {unknown} at {where}"
    if "$ref" in schema:
        return errors(value, resolve(document, schema["$ref"]), document, where)
    found: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[name](value) for name in names):
            return [f"{where}: {value!r:.60} is not of type {names}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r:.60} is not {schema['const']!r}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: {value!r:.60} does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
    if TYPES["number"](value) and "minimum" in schema and value < schema["minimum"]:
        found.append(f"{where}: {value} is below {schema['minimum']}")
    if "anyOf" in schema and all(errors(value, option, document, where)
                                 for option in schema["anyOf"]):
        found.append(f"{where}: {value!r:.60} matches no option of anyOf")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{where}: missing {name!r}" for name in schema.get("required", ())
                  if name not in value]
        for name, item in value.items():
            if name in properties:
                found += errors(item, properties[name], document, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{where}: undocumented property {name!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += errors(item, schema["additionalProperties"], document, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += errors(item, schema["items"], document, f"{where}[{index}]")
    return found


def schemas_in(node: Any, key: str = "") -> list[dict]:
    """Every schema object in the document, nested ones included."""
    found: list[dict] = []
    if isinstance(node, dict):
        if key in ("schema", "items", "additionalProperties") or key.startswith("schemas/"):
            found.append(node)
        for name, child in node.items():
            if key == "properties" or key == "schemas":
                found += schemas_in(child, "schemas/" + name)
            elif name == "anyOf":
                for option in child:
                    found += schemas_in(option, "schemas/anyOf")
            else:
                found += schemas_in(child, name)
    elif isinstance(node, list):
        for child in node:
            found += schemas_in(child, key)
    return found


# -- the document -------------------------------------------------------------

@pytest.fixture
def document(client) -> dict:
    """The served OpenAPI document."""
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_validator_finds_type_required_extra_enum_and_nested_errors(document):
    machine = {"$ref": "#/components/schemas/Machine"}
    assert errors({"id": 1}, machine, document)  # wrong type and missing fields
    error = {"$ref": "#/components/schemas/Error"}
    assert errors({"error": "x", "message": "y", "status": 400}, error, document) == []
    assert errors({"error": "x", "message": "y", "status": "400"}, error, document) == [
        "$.status: '400' is not of type ['integer']"]
    assert errors({"error": "x", "message": "y", "status": 400, "extra": 1}, error, document) == [
        "$: undocumented property 'extra'"]
    last_task = {"$ref": "#/components/schemas/LastTask"}
    task = {"task_id": "A", "run_id": 0, "state": "lost", "reason_resolved": None, "time": None,
            "url": "u"}
    assert errors(task, last_task, document) == [
        "$.state: 'lost' is not one of ['running', 'completed', 'failed', 'exception', None]"]
    assert errors([{"counts": {"completed": -1}}], {"type": "array", "items": {
        "type": "object", "properties": {"counts": {"type": "object", "properties": {
            "completed": {"type": "integer", "minimum": 0}}}}}}, document) == [
        "$[0].counts.completed: -1 is below 0"]


def test_document_is_openapi_3_1_with_resolvable_references_and_checkable_schemas(document):
    assert document["openapi"] == "3.1.0"
    refs = re.findall(r"'\$ref': '([^']+)'", repr(document))
    assert refs
    for ref in refs:
        assert isinstance(resolve(document, ref), dict)
    schemas = schemas_in(document)
    assert len(schemas) > 20
    for schema in schemas:
        assert not set(schema) - ASSERTIONS - ANNOTATIONS, schema
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], f"{method} {path} documents no response"
            for status in operation["responses"]:
                assert re.fullmatch(r"[1-5]\d\d", status), (path, status)


def documented_routes(document: dict) -> set[tuple[str, str]]:
    """(method, path template) of every documented operation."""
    return {(method.upper(), path) for path, operations in document["paths"].items()
            for method in operations}


def test_every_route_of_the_app_is_documented_and_nothing_else(app_factory, document):
    app = app_factory()
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(method, path) for method in rule.methods & HTTP_METHODS}
    assert served == documented_routes(document)


def parameter_names(document: dict, path: str, where: str = "query") -> set[str]:
    """The documented parameters of GET path."""
    return {param["name"] for param in document["paths"][path]["get"].get("parameters", ())
            if param["in"] == where}


def test_documented_query_parameters_are_the_ones_the_views_accept(document):
    assert parameter_names(document, "/machines") == MACHINE_PARAMS
    assert parameter_names(document, "/summary") == {"stale_after"}
    assert parameter_names(document, "/") == set(DASHBOARD_PARAMS)
    assert parameter_names(document, "/machines/{machine_id}", "path") == {"machine_id"}
    assert parameter_names(document, "/machine/{machine_id}", "path") == {"machine_id"}


# -- real responses against the document -----------------------------------------



@pytest.fixture
def fleet(store):
    """Every shape a machine takes (see record_every_shape)."""
    record_every_shape(store)
    return store


@dataclass(frozen=True)
class Case:
    """A real request, the documented operation it exercises and the status it must get."""

    url: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    redis_down: bool = False
    no_listener: bool = False
    revalidate: bool = False


CASES = [
    Case("/machines", "/machines", 200),
    Case("/machines?stale=6h&datacenter=mdc2&sort=-lastseen", "/machines", 200),
    Case("/machines?format=csv", "/machines", 200),
    Case("/machines?fields=machine,datacenter,lastseen", "/machines", 200),
    Case("/machines?fields=id,last_task,stale&sort=lastseen", "/machines", 200),
    Case("/machines?fields=machine,counts&format=csv", "/machines", 200),
    Case("/machines?fields=colour", "/machines", 400),
    Case("/machines", "/machines", 200, headers={"Accept": "text/csv"}),
    Case("/machines", "/machines", 304, revalidate=True),
    Case("/machines?include=never_seen&sort=lastseen", "/machines", 200),
    Case("/machines?include=never_seen&format=csv", "/machines", 200),
    Case("/machines?include=everything", "/machines", 400),
    Case("/machines?stale=soon", "/machines", 400),
    Case("/machines?colour=red", "/machines", 400),
    Case("/machines?limit=2", "/machines", 200),
    Case("/machines?limit=1&sort=-machine&fields=id,problems&format=csv", "/machines", 200),
    Case("/machines?limit=2&include=never_seen&sort=lastseen", "/machines", 200),
    Case("/machines?limit=2&cursor=1dC1", "/machines", 200),
    Case("/machines?limit=5001", "/machines", 400),
    Case("/machines?limit=2&cursor=2abc", "/machines", 400),
    Case("/machines", "/machines", 503, redis_down=True),
    Case("/machines/mdc1:t-linux64-ms-100", "/machines/{machine_id}", 200),
    Case("/machines/t-w1064-ms-281", "/machines/{machine_id}", 200),
    Case("/machines/mdc3:t-mac-ms-001", "/machines/{machine_id}", 200),
    Case("/machines/mdc3:t-legacy-1", "/machines/{machine_id}", 200),
    Case("/machines/bad!id", "/machines/{machine_id}", 400),
    Case("/machines/mdc1:t-never-seen", "/machines/{machine_id}", 404),
    Case("/machines/mdc1:t-linux64-ms-199", "/machines/{machine_id}", 404),
    Case("/machines/t-spare-1", "/machines/{machine_id}", 404),
    Case("/machines/t-linux64-ms-100", "/machines/{machine_id}", 409),
    Case("/machines/mdc1:t-linux64-ms-100", "/machines/{machine_id}", 503, redis_down=True),
    Case("/summary", "/summary", 200),
    Case("/summary?stale_after=1h", "/summary", 200),
    Case("/summary", "/summary", 304, revalidate=True),
    Case("/summary?stale_after=later", "/summary", 400),
    Case("/summary", "/summary", 503, redis_down=True),
    Case("/labels?min_machines=1", "/labels", 200),
    Case("/labels?format=csv", "/labels", 200),
    Case("/labels", "/labels", 304, revalidate=True),
    Case("/labels?min_machines=0", "/labels", 400),
    Case("/labels", "/labels", 503, redis_down=True),
    Case("/", "/", 200),
    Case("/?stale=6h&datacenter=mdc2", "/", 200),
    Case("/?stale=later", "/", 400),
    Case("/", "/", 503, redis_down=True),
    Case("/?page=2", "/", 200),
    Case("/?page=0", "/", 400),
    Case("/machine/mdc1:t-linux64-ms-100", "/machine/{machine_id}", 200),
    Case("/machine/mdc3:t-mac-ms-001", "/machine/{machine_id}", 200),
    Case("/machine/t-linux64-ms-100", "/machine/{machine_id}", 400),
    Case("/machine/mdc1:t-never-seen", "/machine/{machine_id}", 404),
    Case("/machine/mdc1:t-linux64-ms-100", "/machine/{machine_id}", 503, redis_down=True),
    Case("/metrics", "/metrics", 200),
    Case("/metrics", "/metrics", 503, redis_down=True),
    Case("/__heartbeat__", "/__heartbeat__", 200),
    Case("/__heartbeat__", "/__heartbeat__", 500, no_listener=True),
    Case("/__heartbeat__", "/__heartbeat__", 500, redis_down=True),
    Case("/__lbheartbeat__", "/__lbheartbeat__", 200),
    Case("/__lbheartbeat__", "/__lbheartbeat__", 200, redis_down=True),
    Case("/__version__", "/__version__", 200),
    Case("/openapi.json", "/openapi.json", 200),
]


def test_every_documented_response_is_checked_against_a_real_one(document):
    documented = {(path, int(status)) for path, operations in document["paths"].items()
                  for operation in operations.values() for status in operation["responses"]}
    assert documented == {(case.path, case.status) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.status}-{case.url}")
def test_real_response_matches_the_document(client, fleet, document, fake_server, case):
    if case.no_listener:
        fleet.redis.delete("listener")
    headers = dict(case.headers)
    if case.revalidate:
        headers["If-None-Match"] = client.get(case.url).headers["ETag"]
    fake_server.connected = not case.redis_down
    response = client.get(case.url, headers=headers)

    assert response.status_code == case.status, response.get_data(as_text=True)[:300]
    documented = document["paths"][case.path]["get"]["responses"][str(case.status)]
    for header, described in documented.get("headers", {}).items():
        # a header the document says may be absent (a paged answer's way on) is checked when sent
        if described.get("required", True) or header in response.headers:
            assert header in response.headers, f"documented header {header} is missing"
            assert errors(response.headers[header], described["schema"], document) == []
    if "limit=" in case.url and case.status == 200:
        assert "X-Next-Cursor" in response.headers and "Link" in response.headers
    content = documented.get("content", {})
    if case.status == 304:
        assert not content and response.get_data() == b""
        return
    assert response.mimetype in content, f"{response.mimetype} is not documented"
    if response.mimetype == "application/json":
        body = response.get_json()
        assert errors(body, content["application/json"]["schema"], document) == []
        if case.url == "/machines" and case.status == 200:
            assert len(body) == 5  # every shape of machine went through the schema
        if case.url.startswith("/machines?include=never_seen") and case.status == 200:
            assert len(body) == 7 and [m["lastseen"] for m in body[:2]] == [None, None]
        if case.status == 404:
            assert body["in_inventory"] is (case.url != "/machines/mdc1:t-never-seen")
    elif response.mimetype == "text/csv":
        header_line = response.get_data(as_text=True).split("\r\n")[0]
        fields = parse_qs(urlsplit(case.url).query).get("fields")
        if fields:  # the columns of the fields asked, as the description says
            assert header_line == ",".join(csv_columns(parse_fields(fields[0])))
        else:
            assert header_line + "\r\n" == content["text/csv"]["example"]
