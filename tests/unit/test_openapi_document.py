"""The committed OpenAPI document is the one the routes' models generate, and names every route."""

from __future__ import annotations

import json

import schemathesis

from tally.api.openapi import DOCUMENT_PATH, OPERATIONS, REGENERATE, document, registered_routes, render


def test_the_committed_document_is_the_generated_one():
    committed = DOCUMENT_PATH.read_text() if DOCUMENT_PATH.exists() else ""
    assert committed == render(document()), (
        f"{DOCUMENT_PATH.name} is stale: a route, a request model or metronome-sdk changed. "
        f"Run `{REGENERATE}` and commit the file."
    )


def test_every_served_route_is_documented_once():
    keys = [op.key for op in OPERATIONS]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(registered_routes())


def test_the_document_is_valid_openapi_3_1():
    doc = json.loads(DOCUMENT_PATH.read_text())
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()


def test_request_bodies_are_the_routes_own_models_and_responses_the_sdks():
    doc = json.loads(DOCUMENT_PATH.read_text())
    create = doc["paths"]["/v1/customers"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CustomerCreate"}
    assert create["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CustomerCreateResponse"}
    # extra="forbid" on the request model: an unknown field is documented as refused
    assert doc["components"]["schemas"]["MetricCreate"]["additionalProperties"] is False
