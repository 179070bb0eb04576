"""Customer-level commits and credits, balances with their ledgers, and manual ledger entries."""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.balance_models import (
    CustomerBalancesList,
    CustomerCommitCreate,
    CustomerCreditCreate,
    CustomerGrantsList,
    GrantEndDateUpdate,
    ManualEntryRequest,
    NetBalanceRequest,
    customer_grant_document,
    grant_json,
)
from tally.api.contract_models import parse_time_param
from tally.api.models import read_body
from tally.api.pagination import offset_cursor
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS
from tally.services.balances import contract_grant_document

router = Router()


@router.post("/v1/contracts/customerCommits/create")
def create_customer_commit() -> dict:
    body = CustomerCommitCreate.model_validate(read_body(router.current_event))
    service = wiring.balance_service()
    document = service.create_customer_grant(customer_grant_document(body, wiring.catalog_service().now()))
    wiring.alert_service().evaluate_after_write(body.customer_id)  # a new balance may cross a low-balance alert
    return {"data": {"id": document["id"]}}


@router.post("/v1/contracts/customerCredits/create")
def create_customer_credit() -> dict:
    body = CustomerCreditCreate.model_validate(read_body(router.current_event))
    service = wiring.balance_service()
    document = service.create_customer_grant(customer_grant_document(body, wiring.catalog_service().now()))
    wiring.alert_service().evaluate_after_write(body.customer_id)
    return {"data": {"id": document["id"]}}


def _update_end_date(kind: str) -> dict:
    body = GrantEndDateUpdate.model_validate(read_body(router.current_event))
    grant_id = body.credit_id if kind == "CREDIT" else body.commit_id
    if grant_id is None:
        raise InvalidInput("credit_id" if kind == "CREDIT" else "commit_id", "is required")
    document = wiring.balance_service().update_end_date(
        body.customer_id,
        grant_id,
        kind,
        parse_time_param("access_ending_before", body.access_ending_before),
        parse_time_param("invoices_ending_before", body.invoices_ending_before),
    )
    return {"data": {"id": document["id"]}}


@router.post("/v1/contracts/customerCommits/updateEndDate")
def update_customer_commit_end_date() -> dict:
    return _update_end_date("COMMIT")


@router.post("/v1/contracts/customerCredits/updateEndDate")
def update_customer_credit_end_date() -> dict:
    return _update_end_date("CREDIT")


def _grants_page(
    customer_id: str,
    *,
    credits: bool | None,
    include_contract: bool,
    grant_id: str | None,
    covering_date: datetime | None,
    effective_before: datetime | None,
    starting_at: datetime | None,
    include_balance: bool,
    include_ledgers: bool,
    exclude_zero: bool,
    cursor: str | None,
    limit: int,
    include_archived: bool = False,
) -> dict:
    """Grants of the customer, filtered like Metronome's list endpoints, with balances and ledgers
    from one burn-down. `credits`: True credits only, False commits only, None both.
    `include_archived`: also the contract-level ones an edit archived (with archived_at)."""
    figures = wiring.balance_service().figures(
        customer_id, with_balances=include_balance or include_ledgers or exclude_zero, with_ledgers=include_ledgers
    )
    grants = figures.grants
    products, names = wiring.contract_service().products(), wiring.catalog_service().credit_type_names()
    documents, listed = grants.documents, list(grants.grants)
    if include_archived and grants.archived:
        documents = documents | _archived_documents(customer_id)
        listed += [g for g in grants.archived if g.id in documents]
    rows = []
    for grant in sorted(listed, key=lambda g: (g.access_schedule[0].starting_at if g.access_schedule else datetime.min, g.id)):
        doc = documents[grant.id]
        is_credit = doc["type"] == "CREDIT"
        if credits is not None and is_credit != credits:
            continue
        if grant_id is not None and grant.id != grant_id:
            continue
        if not include_contract and grant_id is None and doc.get("stored_in_contract"):
            continue
        segments = grant.access_schedule
        if covering_date is not None and not any(s.starting_at <= covering_date < s.ending_before for s in segments):
            continue
        if effective_before is not None and not any(s.starting_at < effective_before for s in segments):
            continue
        if starting_at is not None and not any(s.ending_before > starting_at for s in segments):
            continue
        balance = figures.balance(grant.id, covering_date)
        if exclude_zero and not balance:
            continue
        rows.append(
            grant_json(
                doc,
                products,
                names,
                balance if include_balance else None,
                figures.ledger(grant.id) if include_ledgers else None,
                figures.invoice_ids,
            )
        )
    start = offset_cursor(cursor, "next_page")
    end = start + limit
    return {"data": rows[start:end], "next_page": str(end) if end < len(rows) else None}


def _archived_documents(customer_id: str) -> dict[str, dict]:
    """The customer's contract-level commits and credits archived by an edit, as documents of their own."""
    return {
        doc["id"]: contract_grant_document(doc, contract)
        for contract in wiring.contract_service().list(customer_id)
        for doc in (contract.get("archived_commits") or []) + (contract.get("archived_credits") or [])
    }


def _list_grants(body: CustomerGrantsList, credits: bool) -> dict:
    return _grants_page(
        body.customer_id,
        credits=credits,
        include_contract=body.include_contract_credits if credits else body.include_contract_commits,
        grant_id=body.credit_id if credits else body.commit_id,
        covering_date=parse_time_param("covering_date", body.covering_date),
        effective_before=parse_time_param("effective_before", body.effective_before),
        starting_at=parse_time_param("starting_at", body.starting_at),
        include_balance=body.include_balance,
        include_ledgers=body.include_ledgers,
        exclude_zero=False,
        cursor=body.next_page,
        limit=body.limit,
        include_archived=body.include_archived,
    )


@router.post("/v1/contracts/customerCommits/list")
def list_customer_commits() -> dict:
    return _list_grants(CustomerGrantsList.model_validate(read_body(router.current_event)), credits=False)


@router.post("/v1/contracts/customerCredits/list")
def list_customer_credits() -> dict:
    return _list_grants(CustomerGrantsList.model_validate(read_body(router.current_event)), credits=True)


@router.post("/v1/contracts/customerBalances/list")
def list_customer_balances() -> dict:
    body = CustomerBalancesList.model_validate(read_body(router.current_event))
    return _grants_page(
        body.customer_id,
        credits=None,
        include_contract=body.include_contract_balances,
        grant_id=body.id,
        covering_date=parse_time_param("covering_date", body.covering_date),
        effective_before=parse_time_param("effective_before", body.effective_before),
        starting_at=parse_time_param("starting_at", body.starting_at),
        include_balance=body.include_balance,
        include_ledgers=body.include_ledgers,
        exclude_zero=body.exclude_zero_balances,
        cursor=body.next_page,
        limit=body.limit,
        include_archived=body.include_archived,
    )


@router.post("/v1/contracts/customerBalances/getNetBalance")
def get_net_balance() -> dict:
    body = NetBalanceRequest.model_validate(read_body(router.current_event))
    credit_type_id = body.credit_type_id or USD_CENTS.id
    balance = wiring.balance_service().net_balance(
        body.customer_id,
        credit_type_id,
        include_drafts=body.invoice_inclusion_mode == "FINALIZED_AND_DRAFT",
        filters=body.balance_filters(),
    )
    return {"data": {"balance": balance, "credit_type_id": credit_type_id}}


@router.post("/v1/contracts/addManualBalanceLedgerEntry")
def add_manual_balance_ledger_entry() -> dict:
    body = ManualEntryRequest.model_validate(read_body(router.current_event))
    wiring.balance_service().add_manual_entry(
        body.customer_id,
        body.id,
        body.segment_id,
        body.amount,
        body.reason,
        parse_time_param("timestamp", body.timestamp),
        body.uniqueness_key,
        body.per_group_amounts,
    )
    wiring.alert_service().evaluate_after_write(body.customer_id)  # a ledger write moves a balance
    return {}
