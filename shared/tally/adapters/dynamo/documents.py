"""Customer-owned documents in the billing table: contracts, customer-level commits and credits,
manual ledger entries.

Keys, for a document kind K: `K#<id>` / sk `#` holds the document (exact JSON, so prices and
quantities stay Decimal) and a `version` for optimistic concurrency. A customer's documents of a
kind are listed through gsi1 (`Ks#<customer_id>`, sorted by the kind's sort field, then id). A
`uniqueness_key` claims `K_uniq#<customer_id>#<key>` in the same transaction, so a repeated create
is a 409 and never a second document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Sequence

from botocore.exceptions import ClientError

from tally.adapters.clock import system_clock
from tally.adapters.dynamo.reads import ITEM, all_gsi1, all_items, batch_get, get_item
from tally.adapters.dynamo.close_index import written_entry
from tally.adapters.dynamo.client import claim, dynamodb, error_code, transact_or_conflict, translate
from tally.adapters.dynamo.invoices import records_unchanged
from tally.adapters.dynamo.notifications import DynamoLifecycleIndex
from tally.billing import exact_json
from tally.billing.errors import Conflict
from tally.billing.notifications import contract_occurrences, grant_occurrences
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.contracts import ContractChanged


def _item(kind: str, sort_field: str, document: dict, version: int) -> dict:
    sort_at = parse_rfc3339(document[sort_field])
    return {
        "pk": {"S": f"{kind}#{document['id']}"},
        "sk": {"S": ITEM},
        "gsi1pk": {"S": f"{kind}s#{document['customer_id']}"},
        "gsi1sk": {"S": f"{format_sortable(sort_at)}#{document['id']}"},
        "document": {"S": exact_json.dumps(document)},
        "version": {"N": str(version)},
        # Its cycle-close wake entry, due at once: written with the document, so never missing.
        **written_entry(kind, document),
    }


def _document(item: dict) -> dict:
    document = exact_json.loads(item["document"]["S"])
    document["_version"] = int(item["version"]["N"])
    return document


def _stored(document: dict) -> dict:
    return {k: v for k, v in document.items() if not k.startswith("_")}


class DynamoDocumentStore:
    """Documents of one kind, owned by customers (ContractStore in services/contracts.py)."""

    def __init__(self, table: str, kind: str, sort_field: str, client=None) -> None:
        self._table = table
        self._kind = kind
        self._sort_field = sort_field
        self._client = client or dynamodb()

    def create(self, document: dict, uniqueness_key: str | None = None) -> None:
        # Idempotent by key: the document id is new (attribute_not_exists), and the uniqueness
        # claim, when given, and what the kind writes with it are in the same transaction or not at all.
        actions: list[dict] = [self._put_new(document), *self._created_with(document)]
        if uniqueness_key is not None:
            claim_pk = f"{self._kind}_uniq#{document['customer_id']}#{uniqueness_key}"
            actions.append(claim(self._table, claim_pk, document_id=document["id"]))
        transact_or_conflict(
            self._client,
            actions,
            f"a {self._kind} with uniqueness_key {uniqueness_key!r} already exists for this customer"
            if uniqueness_key is not None
            else f"the {self._kind} already exists",
        )

    def _created_with(self, document: dict) -> list[dict]:
        """Items a kind of document writes in its create transaction (none by default)."""
        return []

    def get(self, document_id: str) -> dict | None:
        item = get_item(self._client, self._table, f"{self._kind}#{document_id}")
        return None if item is None else _document(item)

    def replace(self, document: dict, invoices_written: int | None = None) -> None:
        """Write a changed document; Conflict if it changed since it was read (`_version`), or, given
        `invoices_written`, if the customer's invoice records changed since they were counted (the
        change was checked against invoices that are no longer all there are)."""
        version = document["_version"]
        if invoices_written is not None:
            self._replace_if_invoices_unchanged(document, invoices_written)
            return
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item(self._kind, self._sort_field, _stored(document), version + 1),
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"the {self._kind} changed while it was being updated; retry") from exc
            raise translate(exc) from exc

    def _as_read(self, document: dict) -> dict | None:
        """The stored document `document` was read as (its `_version`), read again at the write;
        None for a new one, or if it has changed since (the write then fails its condition anyway).
        Writes ask for it, rather than every read noting what it held: reads are the hot path."""
        if "_version" not in document:
            return None
        item = get_item(self._client, self._table, f"{self._kind}#{document['id']}")
        if item is None or int(item["version"]["N"]) != document["_version"]:
            return None
        return _document(item)

    def _put_new(self, document: dict) -> dict:
        """The transaction action writing a new document (its id never used)."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": _item(self._kind, self._sort_field, _stored(document), 1),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _put_next_version(self, document: dict) -> dict:
        """The transaction action replacing a document, conditional on the `_version` it was read at."""
        version = document["_version"]
        return {
            "Put": {
                "TableName": self._table,
                "Item": _item(self._kind, self._sort_field, _stored(document), version + 1),
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        }

    def list_for_customer(self, customer_id: str) -> list[dict]:
        """Every document of this kind of the customer, in sort order (a customer has few)."""
        return [_document(item) for item in all_gsi1(self._client, self._table, f"{self._kind}s#{customer_id}")]

    def _replace_if_invoices_unchanged(self, document: dict, invoices_written: int) -> None:
        actions = [
            self._put_next_version(document),
            records_unchanged(self._table, document["customer_id"], invoices_written),
            {  # counted, so that a finalization priced before this write is priced again (InvoiceStore.create)
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": f"{self._kind}_edits#{document['customer_id']}"}, "sk": {"S": ITEM}},
                    "UpdateExpression": "SET edits = if_not_exists(edits, :zero) + :one",
                    "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}},
                }
            },
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if error_code(exc) == "TransactionCanceledException" and any(
                code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes
            ):
                raise Conflict(f"the {self._kind} or the customer's invoices changed while it was being updated; retry") from exc
            raise translate(exc) from exc


class DynamoGrantStore(DynamoDocumentStore):
    """Customer-level commits and credits. Like contracts, every write first records the segment
    occurrences (notifications) the document was not read with; every write goes through replace,
    _put_new or _put_next_version."""

    def __init__(self, table: str, client=None, clock: Callable[[], datetime] = system_clock) -> None:
        super().__init__(table, "grant", "created_at", client)
        self._lifecycle = DynamoLifecycleIndex(table, self._client, clock)  # the clock dates late occurrences

    def _index_lifecycle(self, document: dict) -> None:
        known = _occurrence_keys(grant_occurrences, self._as_read(document))
        self._lifecycle.record(o for o in grant_occurrences(document) if o.key not in known)

    def replace(self, document: dict, invoices_written: int | None = None) -> None:
        if invoices_written is None:  # otherwise _put_next_version records them
            self._index_lifecycle(document)
        super().replace(document, invoices_written)

    def _put_new(self, document: dict) -> dict:
        self._index_lifecycle(document)
        return super()._put_new(document)

    def _put_next_version(self, document: dict) -> dict:
        self._index_lifecycle(document)
        return super()._put_next_version(document)




class DynamoContractStore(DynamoDocumentStore):
    """Contracts, and the edits made to them (services/contract_edits.py).

    An edit is one item, `contract_edits#<contract_id>` / `<sequence>`, the sequence being the
    contract version the edit made; it is written in one transaction with the edited contract
    (conditional on the version read) and the edit's uniqueness claim, so an edit is applied and
    recorded exactly once or not at all."""

    def __init__(self, table: str, client=None, clock: Callable[[], datetime] = system_clock) -> None:
        super().__init__(table, "contract", "starting_at", client)
        self._lifecycle = DynamoLifecycleIndex(table, self._client, clock)  # the clock dates late occurrences

    def _index_lifecycle(self, document: dict, read: dict | None) -> None:
        """Record the lifecycle occurrences the documents will have, ahead of writing them: a write
        that then fails leaves entries delivery finds stale, never a missing one (notifications).
        Only those the stored version it was read as (`read`) did not have, so an edit costs a put
        per changed occurrence, not one per segment of every grant."""
        known = _occurrence_keys(contract_occurrences, read)
        self._lifecycle.record(o for o in contract_occurrences(document) if o.key not in known)

    # -- the parts of contracts, found by their own id (custom field values name them alone) -----
    # `contract_part#<part id>` / sk `#` holds the id of the contract holding that subscription,
    # scheduled charge, discount, professional service, commit or credit. It is written before the
    # contract (an idempotent put: a part id is a new uuid, in one contract for ever), so a part
    # of a stored contract is always found; an entry whose contract write then failed names a
    # contract without that part, which part_owner's caller checks.
    # Every contract write goes through replace, _put_new or _put_next_version, so these also
    # record the contract's lifecycle occurrences ahead of the write (_index_lifecycle).
    def replace(self, document: dict, invoices_written: int | None = None) -> None:
        if invoices_written is None:  # otherwise _put_next_version indexes it
            self._index(document)
        super().replace(document, invoices_written)

    def _put_new(self, document: dict) -> dict:
        self._index(document)
        return super()._put_new(document)

    def _put_next_version(self, document: dict) -> dict:
        self._index(document)
        return super()._put_next_version(document)

    def _index(self, document: dict) -> None:
        """Ahead of the write: its new parts and its new lifecycle occurrences."""
        read = self._as_read(document)
        self._index_parts(document, read)
        self._index_lifecycle(document, read)

    def _index_parts(self, document: dict, read: dict | None) -> None:
        new = sorted(part_ids(document) - (part_ids(read) if read is not None else set()))
        for start in range(0, len(new), 25):  # BatchWriteItem's most
            pending = {
                self._table: [
                    {"PutRequest": {"Item": {"pk": {"S": _part_pk(i)}, "sk": {"S": ITEM}, "contract_id": {"S": document["id"]}}}}
                    for i in new[start : start + 25]
                ]
            }
            try:
                while pending:  # idempotent puts by key: resending unprocessed ones is safe
                    pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            except ClientError as exc:
                raise translate(exc) from exc

    def part_owner(self, part_id: str) -> str | None:
        """The id of the contract a part was written in (read consistently), None if unknown."""
        item = get_item(self._client, self._table, _part_pk(part_id))
        return None if item is None else item["contract_id"]["S"]

    def _created_with(self, document: dict) -> list[dict]:
        # A contract made from a package is listed on it (package_link), in its create transaction.
        return package_link(self._table, document)

    def contracts_on_package(
        self, package_id: str, earliest: datetime | None, latest: datetime | None, after: str | None, limit: int
    ) -> tuple[list[dict], str | None]:
        """A page of the contracts made from the package (services/packages.py PackageContracts)."""
        return _contracts_on_package(self._client, self._table, package_id, earliest, latest, after, limit)

    def commit_edit(
        self, document: dict, edit: dict, uniqueness_key: str | None = None, invoices_written: int | None = None,
        others_written: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Write an edited contract with its edit record. ContractChanged if the contract changed
        since it was read (`_version`), or, given `invoices_written`, if the customer's finalized
        invoices changed since they were counted; Conflict if the uniqueness key was used before."""
        actions: list[dict] = [
            self._put_next_version(document),
            self._put_edit_record(document["id"], edit),
        ]
        if uniqueness_key is not None:
            claim_pk = f"contract_edit_uniq#{document['id']}#{uniqueness_key}"
            actions.append(claim(self._table, claim_pk, edit_id=edit["id"]))
        if invoices_written is not None:
            actions.append(records_unchanged(self._table, document["customer_id"], invoices_written))
        # A parent's children: what they finalized from its grants was read at these counts.
        actions += [records_unchanged(self._table, other, count) for other, count in others_written]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if uniqueness_key is not None and len(codes) > 2 and codes[2] == "ConditionalCheckFailed":
                raise Conflict(f"an edit with uniqueness_key {uniqueness_key!r} was already made to this contract") from exc
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes):
                raise ContractChanged("the contract changed while it was being edited") from exc
            raise translate(exc) from exc

    def create_transition(
        self, document: dict, uniqueness_key: str | None, ended: dict, edit: dict, invoices_written: int | None
    ) -> None:
        """Create a contract and, in the same transaction, write the contract it transitions from
        (`ended`, conditional on its `_version`) with the edit record of its new end. ContractChanged
        if that contract or the customer's finalized invoices changed since they were read."""
        actions: list[dict] = [
            self._put_next_version(ended),
            self._put_edit_record(ended["id"], edit),
            self._put_new(document),
            *package_link(self._table, document),
        ]
        if invoices_written is not None:
            actions.append(records_unchanged(self._table, document["customer_id"], invoices_written))
        if uniqueness_key is not None:
            claim_pk = f"{self._kind}_uniq#{document['customer_id']}#{uniqueness_key}"
            actions.append(claim(self._table, claim_pk, document_id=document["id"]))
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if uniqueness_key is not None and codes and codes[-1] == "ConditionalCheckFailed":
                raise Conflict(f"a contract with uniqueness_key {uniqueness_key!r} already exists for this customer") from exc
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes):
                raise ContractChanged("the contract transitioned from changed meanwhile") from exc
            raise translate(exc) from exc

    def create_child(self, document: dict, uniqueness_key: str | None, parent: dict) -> None:
        """Create a child contract and, in the same transaction, write its parent listing it
        (conditional on the parent's `_version`), so a child is linked once or not at all and a
        concurrent change of the parent is never lost. ContractChanged if the parent changed."""
        actions: list[dict] = [
            self._put_next_version(parent),
            self._put_new(document),
        ]
        if uniqueness_key is not None:
            claim_pk = f"{self._kind}_uniq#{document['customer_id']}#{uniqueness_key}"
            actions.append(claim(self._table, claim_pk, document_id=document["id"]))
        actions += package_link(self._table, document)  # after the claim: its index (2) is checked below
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if uniqueness_key is not None and len(codes) > 2 and codes[2] == "ConditionalCheckFailed":
                raise Conflict(f"a contract with uniqueness_key {uniqueness_key!r} already exists for this customer") from exc
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes):
                raise ContractChanged("the parent contract changed meanwhile") from exc
            raise translate(exc) from exc

    def _put_edit_record(self, contract_id: str, edit: dict) -> dict:
        """The transaction action writing an edit record (its sequence never used)."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": _edits_pk(contract_id)},
                    "sk": {"S": f"{edit['sequence']:012d}"},
                    "document": {"S": exact_json.dumps(edit)},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def edit_claimed(self, contract_id: str, uniqueness_key: str) -> bool:
        """Whether an edit of the contract took this uniqueness key (read consistently)."""
        return get_item(self._client, self._table, f"contract_edit_uniq#{contract_id}#{uniqueness_key}") is not None

    def edits(self, contract_id: str) -> list[dict]:
        """The contract's edit records, oldest first, read consistently."""
        return [exact_json.loads(item["document"]["S"]) for item in all_items(self._client, self._table, _edits_pk(contract_id))]

    def keep_version(self, document: dict) -> None:
        """Keep the contract as it is at its version (`_version`), before an edit changes it, for
        v2 get's as_of_date: `contract_versions#<contract_id>` / `<version>`. A version is one
        contract state, so writing it again (a retried edit) keeps the first copy, and one kept for
        an edit that then loses its race is still a state the contract had."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _versions_pk(document["id"])},
                    "sk": {"S": f"{document['_version']:012d}"},
                    "document": {"S": exact_json.dumps(_stored(document))},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def version(self, contract_id: str, version: int) -> dict | None:
        """The contract as it was at `version`, if kept (keep_version)."""
        item = get_item(self._client, self._table, _versions_pk(contract_id), f"{version:012d}")
        return None if item is None else exact_json.loads(item["document"]["S"]) | {"_version": version}


# The lists of a contract document whose entries are parts with their own id.
PART_LISTS = (
    "subscriptions", "scheduled_charges", "archived_scheduled_charges", "discounts", "professional_services",
    "commits", "archived_commits", "credits", "archived_credits",
)


def part_ids(document: dict) -> set[str]:
    return {part["id"] for name in PART_LISTS for part in document.get(name) or () if part.get("id")}


def _occurrence_keys(occurrences, document: dict | None) -> set[str]:
    """The keys of the lifecycle occurrences a stored version has (none for None). A version whose
    dates Tally cannot handle (stored before the bounds) has none: its write then indexes them
    all, or refuses, as for a new document."""
    if document is None:
        return set()
    try:
        return {o.key for o in occurrences(document)}
    except ValueError:
        return set()


def _part_pk(part_id: str) -> str:
    return f"contract_part#{part_id}"


def _edits_pk(contract_id: str) -> str:
    return f"contract_edits#{contract_id}"


def _versions_pk(contract_id: str) -> str:
    return f"contract_versions#{contract_id}"


def package_link(table: str, document: dict) -> list[dict]:
    """The transaction action linking a contract made from a package to it (none otherwise); its
    key (package, starting_at, contract id) is new with the contract, so a replay cannot add two."""
    if not document.get("package_id"):
        return []
    return [{
        "Put": {
            "TableName": table,
            "Item": {
                "pk": {"S": f"package_contracts#{document['package_id']}"},
                "sk": {"S": f"{format_sortable(parse_rfc3339(document['starting_at']))}#{document['id']}"},
                "customer_id": {"S": document["customer_id"]},
                "contract_id": {"S": document["id"]},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }]


def _contracts_on_package(
    client, table: str, package_id: str, earliest: datetime | None, latest: datetime | None, after: str | None, limit: int
) -> tuple[list[dict], str | None]:
    """A page of the package's links (starting_at within [earliest, latest]) and the contracts they
    name, read with one BatchGetItem."""
    low = after if after is not None else (format_sortable(earliest) if earliest is not None else None)
    high = None if latest is None else format_sortable(latest) + "#\U0010ffff"
    condition = "pk = :p"
    values: dict = {":p": {"S": f"package_contracts#{package_id}"}}
    if low is not None and high is not None:
        condition += " AND sk BETWEEN :lo AND :hi"
        values |= {":lo": {"S": low}, ":hi": {"S": high}}
    elif low is not None:
        condition += " AND sk >= :lo"
        values[":lo"] = {"S": low}
    elif high is not None:
        condition += " AND sk <= :hi"
        values[":hi"] = {"S": high}
    kwargs = {"TableName": table, "KeyConditionExpression": condition, "ExpressionAttributeValues": values,
              "Limit": limit + (1 if after is not None else 0), "ConsistentRead": True}
    try:
        answer = client.query(**kwargs)
    except ClientError as exc:
        raise translate(exc) from exc
    links = [i for i in answer["Items"] if i["sk"]["S"] != after]  # BETWEEN / >= include the cursor itself
    more = bool(answer.get("LastEvaluatedKey")) or len(links) > limit
    links = links[:limit]
    cursor = links[-1]["sk"]["S"] if links and more else None
    keys = [{"pk": {"S": f"contract#{i['contract_id']['S']}"}, "sk": {"S": ITEM}} for i in links]
    documents = {document["id"]: document for document in map(_document, batch_get(client, table, keys))}
    return [documents[i["contract_id"]["S"]] for i in links if i["contract_id"]["S"] in documents], cursor
