"""Input that ends up in a DynamoDB key, through the API function (in-process gateway, moto tables):
at its bound in 4-byte characters it is stored; past it, a 400 names the field and the rule, and
nothing is written (tally.billing.limits, keys)."""

from __future__ import annotations

from urllib.parse import quote

from tests.service.api_gateway import deployed_api, request

KEY = "tally_key_bounds_key"
LONGEST = "😀" * 128  # MAX_ID_LENGTH characters, 512 bytes


def call(method: str, path: str, body: dict | None = None):
    return request(method, path, KEY, body)


def test_ids_and_aliases_at_their_bound_are_stored_and_one_character_more_is_a_400_naming_the_field():
    with deployed_api(KEY):
        status, created = call("POST", "/v1/customers", {"name": "Acme", "ingest_aliases": [LONGEST]})
        assert status == 200, created
        customer = created["data"]["id"]
        event = {"transaction_id": LONGEST, "customer_id": LONGEST, "event_type": "call", "timestamp": "2026-11-15T07:30:00Z"}
        assert call("POST", "/v1/ingest", [event])[0] == 200

        status, refused = call("POST", "/v1/customers", {"name": "Beta", "ingest_aliases": [LONGEST + "a"]})
        assert status == 400 and refused["field"] == "ingest_aliases[0]" and "at most 128 characters" in refused["message"]
        assert call("POST", "/v1/ingest", [event | {"transaction_id": LONGEST + "a"}])[0] == 400

        # A path id past the bound is refused at the edge, as it would be by DynamoDB's 2,048-byte key.
        status, refused = call("GET", "/v1/customers/" + quote("x" * 129))
        assert status == 400 and refused["field"] == "customer_id" and "at most 128 characters" in refused["message"]
        assert call("GET", "/v1/customers/" + "x" * 128)[0] == 404
        assert call("GET", f"/v1/customers/{customer}")[0] == 200
        listed = call("GET", "/v1/customers")[1]["data"]
        assert [c["name"] for c in listed] == ["Acme"]  # the refused customer was never written
