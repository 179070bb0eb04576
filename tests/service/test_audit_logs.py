"""The audit log (moto DynamoDB): an entry is stored in the same transaction as the change it
records (never one without the other), mutating routes through the API function leave one entry
each with the key id, resource and action, and GET /v1/auditLogs pages by cursor, order, window
and resource. Also GET /v1/services."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from tally.adapters.dynamo.audit import AuditedClient, DynamoAuditLogStore
from tally.billing.audit import AuditEntry, RequestNames, Resource, action_of, names_of_request
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_TRANSACTION_ITEMS
from tally.services.audit_logs import AuditLogService, AuditScope, audit_scope
from tally.services.ports import StoreRefused
from tests.service.api_gateway import deployed_api, request

UTC = timezone.utc
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = "tally_audit_key"


def _entry(n: int, at: datetime, actor: str = "key-1") -> AuditEntry:
    return AuditEntry(id=f"{n:08x}" + "0" * 24, timestamp=at, actor_id=actor, request_id=f"req-{n}",
                      method="POST", route="/v1/customers/archive", action="archive")


def _audit_items(dynamo) -> list[dict]:
    items = dynamo["client"].scan(TableName=dynamo["billing"])["Items"]
    return [i for i in items if i["pk"]["S"].startswith("audit")]


def _put_customer(table: str, customer_id: str, condition: str | None = None) -> dict:
    put = {"TableName": table, "Item": {"pk": {"S": f"customer#{customer_id}"}, "sk": {"S": "#"}}}
    return put | ({"ConditionExpression": condition} if condition else {})


# -- the entry and its change commit together -------------------------------------------------------
def test_a_cancelled_transaction_leaves_no_entry_and_a_committed_one_exactly_its_entry(dynamo):
    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    scope = AuditScope(_entry(1, T0))
    with audit_scope(scope):
        # Given a customer that exists, a create conditional on its absence is cancelled ...
        dynamo["client"].put_item(**_put_customer(table, "c1"))
        with pytest.raises(ClientError) as refused:
            client.put_item(**_put_customer(table, "c1", "attribute_not_exists(pk)"))
        assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"  # as a single put says
        # ... and so is a transaction whose own check fails: the reasons are the caller's items only.
        with pytest.raises(ClientError) as cancelled:
            client.transact_write_items(TransactItems=[
                {"Put": _put_customer(table, "c2")},
                {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "customer#c1"}, "sk": {"S": "#"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
        assert _audit_items(dynamo) == []
        assert "Item" not in dynamo["client"].get_item(TableName=table, Key={"pk": {"S": "customer#c2"}, "sk": {"S": "#"}})
        # A transaction over what leaves room for the entry is refused before anything is written.
        too_many = [{"Put": _put_customer(table, f"x{i}")} for i in range(MAX_TRANSACTION_ITEMS + 1)]
        with pytest.raises(StoreRefused):
            client.transact_write_items(TransactItems=too_many)
        assert _audit_items(dynamo) == []

        # When an update commits, its entry is there, by time and by the resource it wrote.
        client.update_item(TableName=table, Key={"pk": {"S": "customer#c1"}, "sk": {"S": "#"}},
                           UpdateExpression="SET archived_at = :at", ExpressionAttributeValues={":at": {"S": "now"}})
        # A second write of the same request stores the same entry again: still one entry.
        answer = client.update_item(TableName=table, Key={"pk": {"S": "customer#c1"}, "sk": {"S": "#"}},
                                    UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "1"}},
                                    ReturnValues="ALL_NEW")
        assert answer["Attributes"]["n"] == {"N": "1"}  # read back: transactions return no values
    keys = sorted(i["pk"]["S"] for i in _audit_items(dynamo))
    assert keys == ["audit#1", "audit_resource#customer#c1"]
    page = AuditLogService(DynamoAuditLogStore(table, dynamo["client"])).list(limit=10)
    assert [(e.id, e.resource) for e in page.entries] == [(scope.entry.id, Resource("customer", "c1"))]


def test_without_a_scope_writes_are_plain_and_unaudited(dynamo):
    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    client.put_item(**_put_customer(table, "c1"))
    client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "alias#a"}, "sk": {"S": "#"}}}}]})
    assert _audit_items(dynamo) == []


def test_an_audited_batch_write_is_written_with_its_entry(dynamo):
    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    with audit_scope(AuditScope(_entry(2, T0), lambda: RequestNames(customer=Resource("customer", "c9")))):
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "alias#a"}, "sk": {"S": "#"}}}}]})
    # No resource item was written, so the customer the request names is the entry's.
    assert sorted(i["pk"]["S"] for i in _audit_items(dynamo)) == ["audit#2", "audit_resource#customer#c9"]


def test_a_guessed_resource_a_later_write_corrects_leaves_no_stale_index_item(dynamo):
    """POST /v1/contracts/create names its customer and first writes claims: the entry is filed
    under the customer until the contract's own write names the contract."""
    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    scope = AuditScope(_entry(3, T0), lambda: RequestNames(expected="contract", customer=Resource("customer", "c1")))
    with audit_scope(scope):
        client.put_item(TableName=table, Item={"pk": {"S": "contract_part#p1"}, "sk": {"S": "#"}})
        assert sorted(i["pk"]["S"] for i in _audit_items(dynamo)) == ["audit#3", "audit_resource#customer#c1"]
        client.put_item(**_put_customer(table, "c1"))  # another resource: still only a guess
        client.put_item(TableName=table, Item={"pk": {"S": "contract#k1"}, "sk": {"S": "#"}})
        client.put_item(TableName=table, Item={"pk": {"S": "contract_versions#k1"}, "sk": {"S": "1"}})
    assert sorted(i["pk"]["S"] for i in _audit_items(dynamo)) == ["audit#3", "audit_resource#contract#k1"]
    (entry,) = AuditLogService(DynamoAuditLogStore(table, dynamo["client"])).list(limit=10).entries
    assert entry.resource == Resource("contract", "k1")


@pytest.mark.parametrize("method, route, action", [
    ("POST", "/v1/customers", "create"),
    ("POST", "/v1/customers/archive", "archive"),
    ("POST", "/v1/customers/{customer_id}/setName", "setName"),
    ("POST", "/v2/contracts/commits/edit", "edit"),
    ("DELETE", "/v1/customers/{customer_id}/billing-config/{billing_provider_type}", "delete"),
], ids=["a POST to a collection creates", "archive", "a path parameter is not the action", "commits/edit", "DELETE"])
def test_the_action_is_named_by_the_route(method, route, action):
    assert action_of(method, route) == action


@pytest.mark.parametrize("route, path, body, expected, named", [
    ("/v1/customers/archive", {}, {"id": "c1"}, "customer", Resource("customer", "c1")),
    ("/v1/customers/{customer_id}/setName", {"customer_id": "c1"}, {"name": "x"}, "customer", Resource("customer", "c1")),
    ("/v1/contracts/create", {}, {"customer_id": "c1"}, "contract", None),
    ("/v2/contracts/edit", {}, {"customer_id": "c1", "contract_id": "k1"}, "contract", Resource("contract", "k1")),
    ("/v2/contracts/commits/edit", {}, {"customer_id": "c1", "commit_id": "m1"}, "commit", Resource("commit", "m1")),
    ("/v1/customFields/setValues", {}, {"entity": "product", "entity_id": "p1"}, None, Resource("product", "p1")),
    ("/v1/setUpBillingProvider", {}, {}, None, None),
], ids=["archive by id", "a path parameter", "a create names its customer, not its contract", "v2 edit",
        "commits/edit names its commit", "custom field values name their entity", "a route of no family"])
def test_what_a_request_names(route, path, body, expected, named):
    names = names_of_request(route, path, body)
    assert (names.expected, names.named) == (expected, named)


# -- mutating routes through the API function --------------------------------------------------------
def _call(path: str, body: dict) -> dict:
    status, answer = request("POST", path, KEY, body)
    assert status == 200, answer
    return answer


def _logs(query: str = "") -> dict:
    status, answer = request("GET", f"/v1/auditLogs{query}", KEY)
    assert status == 200, answer
    return answer


def test_mutating_routes_leave_one_entry_each_with_key_resource_and_action():
    with deployed_api(KEY):
        from tally import wiring

        (key,) = wiring.api_keys().list()
        metric = _call("/v1/billable-metrics/create", {"name": "calls", "aggregation_type": "COUNT"})["data"]["id"]
        api = _call("/v1/contract-pricing/products/create", {"name": "API", "type": "USAGE", "billable_metric_id": metric})["data"]["id"]
        fee = _call("/v1/contract-pricing/products/create", {"name": "Commit", "type": "FIXED"})["data"]["id"]
        card = _call("/v1/contract-pricing/rate-cards/create", {"name": "Standard"})["data"]["id"]
        _call("/v1/customFields/addKey", {"entity": "customer", "key": "region", "enforce_uniqueness": False})
        customer = _call("/v1/customers", {"name": "Acme"})["data"]["id"]
        _call("/v1/customFields/setValues", {"entity": "customer", "entity_id": customer, "custom_fields": {"region": "eu"}})
        contract = _call("/v1/contracts/create", {
            "customer_id": customer, "rate_card_id": card, "starting_at": "2026-01-01T00:00:00Z",
            "commits": [{"product_id": fee, "type": "PREPAID", "name": "Prepaid", "access_schedule": {"schedule_items": [
                {"amount": 100, "starting_at": "2026-01-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}]}}],
        })["data"]["id"]
        _call("/v2/contracts/edit", {"customer_id": customer, "contract_id": contract, "update_contract_name": "Renamed"})
        (commit,) = _call("/v2/contracts/get", {"customer_id": customer, "contract_id": contract})["data"]["commits"]
        _call("/v2/contracts/commits/edit", {"customer_id": customer, "commit_id": commit["id"], "priority": 5})
        _call("/v1/customers/archive", {"id": customer})
        status, _ = request("POST", "/v1/customers/archive", KEY, {"id": "no-such-customer"})
        assert status == 404  # nothing changed: no entry

        entries = _logs("?sort=date_asc")["data"]
        seen = [(e["description"], e["action"], e.get("resource_type"), e.get("resource_id")) for e in entries]
        assert seen == [
            ("POST /v1/billable-metrics/create", "create", "billable_metric", metric),
            ("POST /v1/contract-pricing/products/create", "create", "product", api),
            ("POST /v1/contract-pricing/products/create", "create", "product", fee),
            ("POST /v1/contract-pricing/rate-cards/create", "create", "rate_card", card),
            ("POST /v1/customFields/addKey", "addKey", "custom_field_key", "customer#region"),
            ("POST /v1/customers", "create", "customer", customer),
            ("POST /v1/customFields/setValues", "setValues", "customer", customer),
            ("POST /v1/contracts/create", "create", "contract", contract),
            ("POST /v2/contracts/edit", "edit", "contract", contract),
            ("POST /v2/contracts/commits/edit", "edit", "commit", commit["id"]),
            ("POST /v1/customers/archive", "archive", "customer", customer),
        ]
        assert {e["actor"]["id"] for e in entries} == {key.key_id}  # the key's id, never the key
        assert KEY not in str(entries)
        assert all(e["status"] == "success" and e["request"]["id"] for e in entries)

        # The customer's own history, newest first.
        mine = _logs(f"?resource_type=customer&resource_id={customer}&sort=date_desc")["data"]
        assert [e["description"] for e in mine] == ["POST /v1/customers/archive", "POST /v1/customFields/setValues", "POST /v1/customers"]


def test_bad_audit_log_queries_are_400s_naming_the_field():
    with deployed_api(KEY):
        for query, field in [
            ("?resource_type=customer", "resource_id"),
            ("?sort=newest", "sort"),
            ("?limit=0", "limit"),
            ("?starting_on=yesterday", "starting_on"),
            ("?next_page=nonsense", "next_page"),
            ("?starting_on=2026-01-02T00:00:00Z&ending_before=2026-01-01T00:00:00Z", "ending_before"),
        ]:
            status, answer = request("GET", f"/v1/auditLogs{query}", KEY)
            assert status == 400 and field in str(answer), (query, answer)


# -- pages ------------------------------------------------------------------------------------------
@pytest.fixture()
def logged(dynamo):
    """Twelve entries a minute apart from T0 (spread over the shards by id); every third is about
    customer c1, the others about c2."""
    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    entries = []
    for n in range(12):
        customer = "c1" if n % 3 == 0 else "c2"
        scope = AuditScope(_entry(n * 0x1111 + 7, T0 + timedelta(minutes=n)))
        with audit_scope(scope):
            client.put_item(TableName=table, Item={"pk": {"S": f"customer#{customer}"}, "sk": {"S": "#"}, "n": {"N": str(n)}})
        entries.append(scope.entry)
    return AuditLogService(DynamoAuditLogStore(table, dynamo["client"])), entries


def _all_pages(service, **query) -> tuple[list[AuditEntry], int]:
    page = service.list(**query)
    found, pages = list(page.entries), 1
    while page.next_page and page.entries:
        page = service.list(limit=query["limit"], next_page=page.next_page)
        found += page.entries
        pages += 1
    return found, pages


def test_pages_follow_the_cursor_in_either_order(logged):
    service, entries = logged
    assert {len({e.id[:8] for e in entries})} == {12}
    ascending, pages = _all_pages(service, limit=5)
    assert ascending == entries and pages == 4  # 5 + 5 + 2, then the empty "nothing new yet" page
    descending, pages = _all_pages(service, limit=5, sort="date_desc")
    assert descending == entries[::-1] and pages == 3
    last = service.list(limit=5, sort="date_desc", next_page=service.list(limit=10, sort="date_desc").next_page)
    assert last.entries == entries[1::-1] and last.next_page is None


def test_a_time_window_and_a_resource_filter_bound_the_pages(logged):
    service, entries = logged
    window = {"starting_on": T0 + timedelta(minutes=3), "ending_before": T0 + timedelta(minutes=9)}
    found, _ = _all_pages(service, limit=4, **window)
    assert found == entries[3:9]  # starting_on inclusive, ending_before exclusive
    found, _ = _all_pages(service, limit=4, sort="date_desc", **window)
    assert found == entries[8:2:-1]
    found, _ = _all_pages(service, limit=2, resource_type="customer", resource_id="c1")
    assert found == entries[0::3]
    found, _ = _all_pages(service, limit=2, resource_type="customer", resource_id="c1", sort="date_desc", **window)
    assert found == [entries[6], entries[3]]


def test_continuous_retrieval_resumes_from_the_last_cursor(logged, dynamo):
    service, entries = logged
    page = service.list(limit=100)
    assert page.entries == entries and page.next_page  # nothing new yet: ask again with this cursor
    assert service.list(limit=100, next_page=page.next_page).entries == []
    table = dynamo["billing"]
    scope = AuditScope(_entry(0xABCDEF, T0 + timedelta(hours=1)))
    with audit_scope(scope):
        AuditedClient(dynamo["client"], lambda: table).put_item(**_put_customer(table, "c3"))
    assert service.list(limit=100, next_page=page.next_page).entries == [scope.entry]


def test_a_cursor_carries_its_window_so_a_new_one_is_refused(logged):
    service, _ = logged
    cursor = service.list(limit=2).next_page
    with pytest.raises(InvalidInput) as refused:
        service.list(limit=2, next_page=cursor, starting_on=T0)
    assert refused.value.field == "starting_on"


# -- GET /v1/services ---------------------------------------------------------------------------------
def test_services_name_the_configured_api_and_egress_addresses(monkeypatch):
    from metronome.types.v1.service_list_response import ServiceListResponse

    from tally import wiring

    with deployed_api(KEY):
        monkeypatch.delenv("TALLY_API_URL", raising=False)
        asked = []
        monkeypatch.setattr("tally.adapters.network.addresses_of", lambda host: asked.append(host) or ("192.0.2.1",))
        wiring.reset()
        status, answer = request("GET", "/v1/services", KEY)  # not configured: the host it came in on
        assert status == 200 and answer["services"][0]["ips"] == ["192.0.2.1"], answer
        assert asked == ["localhost"]  # the test event's requestContext.domainName
        monkeypatch.undo()

        monkeypatch.setenv("TALLY_API_URL", "http://127.0.0.1:8787")
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("TALLY_EGRESS_IPS", "203.0.113.7, 203.0.113.8")
        wiring.reset()
        status, answer = request("GET", "/v1/services", KEY)
        assert status == 200, answer
        assert ServiceListResponse.model_validate(answer).services  # the SDK's shape
        assert answer["services"] == [
            {"name": "Tally API 127.0.0.1 (eu-west-1)", "usage": "accepts_connections_at", "ips": ["127.0.0.1"]},
            {"name": "Tally outbound (eu-west-1)", "usage": "makes_connections_from", "ips": ["203.0.113.7", "203.0.113.8"]},
        ]


def test_a_named_api_host_is_listed_by_the_addresses_it_resolves_to():
    from tally.services.deployment_services import DeploymentServices, ServicesUnknown

    resolved = {"abc123.execute-api.us-east-1.amazonaws.com": ("3.5.1.2", "52.1.2.3")}
    services = DeploymentServices("https://abc123.execute-api.us-east-1.amazonaws.com/", "us-east-1", (), resolved.__getitem__)
    assert [s.to_api() for s in services.list()] == [{
        "name": "Tally API abc123.execute-api.us-east-1.amazonaws.com (us-east-1)", "usage": "accepts_connections_at",
        "ips": ["3.5.1.2", "52.1.2.3"]}]

    # Not configured: the host the request came in on (API Gateway's domainName) is the API's address.
    reached = DeploymentServices(None, "us-east-1", (), resolved.__getitem__).list("abc123.execute-api.us-east-1.amazonaws.com")
    assert reached[0].ips == ("3.5.1.2", "52.1.2.3")

    def unresolvable(host):
        raise OSError("no such host")

    with pytest.raises(ServicesUnknown):
        DeploymentServices("https://gone.example", None, (), unresolvable).list()


class _Conflicting:
    """A client whose first `conflicts` transactions are cancelled by a concurrent write (as
    DynamoDB answers two transactions on one item; moto never does)."""

    def __init__(self, client, conflicts: int) -> None:
        self._client, self.conflicts, self.sent = client, conflicts, 0

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs):
        self.sent += 1
        if self.sent <= self.conflicts:
            reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(kwargs["TransactItems"]) - 1)
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                               "CancellationReasons": reasons}, "TransactWriteItems")
        return self._client.transact_write_items(**kwargs)


def test_a_write_cancelled_by_a_concurrent_one_is_sent_again_not_answered_as_an_error(dynamo):
    table = dynamo["billing"]
    racing = _Conflicting(dynamo["client"], conflicts=2)
    client = AuditedClient(racing, lambda: table, sleep=lambda seconds: None)
    with audit_scope(AuditScope(_entry(3, T0))):
        client.put_item(**_put_customer(table, "c3", "attribute_not_exists(pk)"))
    assert racing.sent == 3
    assert "Item" in dynamo["client"].get_item(TableName=table, Key={"pk": {"S": "customer#c3"}, "sk": {"S": "#"}})
    assert sorted(i["pk"]["S"] for i in _audit_items(dynamo)) == ["audit#3", "audit_resource#customer#c3"]


def test_a_write_that_keeps_conflicting_is_a_retryable_503_and_writes_nothing(dynamo):
    from tally.adapters.dynamo.client import translate
    from tally.services.ports import StoreUnavailable

    table = dynamo["billing"]
    racing = _Conflicting(dynamo["client"], conflicts=99)
    client = AuditedClient(racing, lambda: table, sleep=lambda seconds: None)
    with audit_scope(AuditScope(_entry(4, T0))), pytest.raises(ClientError) as refused:
        client.put_item(**_put_customer(table, "c4"))
    assert racing.sent == 5
    assert isinstance(translate(refused.value), StoreUnavailable)
    assert _audit_items(dynamo) == []


def test_the_systems_own_state_written_inside_a_request_returns_its_values_atomically_unaudited(dynamo):
    # An alert's crossing or a threshold charge advanced by an API request's evaluation
    # (adapters/dynamo/alerts.py, thresholds.py): not the request's change, and its new values must
    # come from the write itself, not from a read after it.
    from tally.adapters.dynamo.audit import unaudited

    table = dynamo["billing"]
    client = AuditedClient(dynamo["client"], lambda: table)
    with audit_scope(AuditScope(_entry(5, T0))):
        answer = unaudited(client).update_item(
            TableName=table, Key={"pk": {"S": "alert#a1"}, "sk": {"S": "#"}}, UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "2"}}, ReturnValues="ALL_NEW")
    assert answer["Attributes"]["n"] == {"N": "2"}
    assert _audit_items(dynamo) == []
    assert unaudited(dynamo["client"]) is dynamo["client"]
