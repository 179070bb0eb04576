"""Contracts (/v1/contracts/*), draft invoices (/v1/customers/<id>/invoices) and their breakdowns."""

from __future__ import annotations

from typing import Mapping

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.contract_models import (
    ContractArchive,
    ContractCreate,
    ContractList,
    ContractRef,
    ContractUpdateEndDate,
    ContractView,
    ScheduleProServicesInvoice,
    SeatBalancesList,
    SubscriptionQuantityHistory,
    SubscriptionSeatsHistory,
    contract_json,
    parse_time_param,
    quantity_history_json,
    seats_history_json,
)
from tally.api.historical_invoice_models import CreateHistoricalInvoices
from tally.api.invoice_models import invoice_json
from tally.api.models import read_body
from tally.api.routes.contract_edits import api_key_id
from tally.api.routes.billing_providers import with_external_invoices
from tally.api.pagination import offset_cursor, page_limit
from tally.billing.errors import InvalidInput
from tally.billing.packages import CONTRACT_FIELDS_WITH_PACKAGE
from tally.billing.pricing import Product
from tally.billing.time import format_rfc3339
from tally.services.invoices import DraftInvoice
from tally.services import contract_billing_providers
from tally.services import seat_balances
from tally.services.thresholds import sets_threshold

router = Router()


def contract_view(customer_id: str, include_balance: bool, include_ledgers: bool) -> ContractView:
    """What the customer's contracts show beyond their documents: credit type names, the invoices
    commits are billed on, subscriptions' billing periods now, and when asked, the balances and
    ledgers of the burn-down /v1/contracts/customerBalances/list shows."""
    catalog = wiring.catalog_service()
    figures = wiring.balance_service().figures(customer_id, with_balances=include_balance or include_ledgers)
    return ContractView(catalog.now(), catalog.credit_type_names(), figures, include_balance, include_ledgers)


def _contract_json(document: dict, view: ContractView) -> dict:
    service = wiring.contract_service()
    return contract_json(document, service.contract(document), service.products(), view)


@router.post("/v1/contracts/create")
def create_contract() -> dict:
    body = ContractCreate.model_validate(read_body(router.current_event))
    if body.package_id is not None or body.package_alias is not None:
        body = _from_package(body)
    request = contract_billing_providers.for_create(body.to_document(), wiring.billing_provider_service())
    if "transition" in request:
        if "hierarchy_configuration" in request:
            raise InvalidInput("hierarchy_configuration", "cannot be combined with transition")
        document = wiring.contract_transition_service().create(request, body.uniqueness_key, api_key_id())
    elif "hierarchy_configuration" in request:
        document = wiring.hierarchy_service().create(request, body.uniqueness_key)
    else:
        document = wiring.contract_service().create(request, body.uniqueness_key)
    if sets_threshold(request):  # evaluated at once, as Metronome does; never fails the create
        wiring.alert_service().evaluate_after_write(document["customer_id"])
    return {"data": {"id": document["id"]}}


def _from_package(body: ContractCreate) -> ContractCreate:
    """The create a package makes (services/packages.py): only the fields Metronome allows next to
    package_id are taken from the request, and they are layered over the package's terms."""
    for name in sorted(body.model_fields_set - set(CONTRACT_FIELDS_WITH_PACKAGE)):
        if getattr(body, name) is not None:
            raise InvalidInput(name, "cannot be given with package_id or package_alias (the package sets it)")
    request = body.model_dump(include=set(CONTRACT_FIELDS_WITH_PACKAGE), exclude_none=True)
    request["starting_at"] = format_rfc3339(parse_time_param("starting_at", body.starting_at))
    return ContractCreate.model_validate(wiring.package_service().contract_create_body(request))


@router.post("/v1/contracts/get")
def get_contract() -> dict:
    body = ContractRef.model_validate(read_body(router.current_event))
    document = wiring.contract_service().get(body.customer_id, body.contract_id)
    view = contract_view(body.customer_id, body.include_balance, body.include_ledgers)
    return {"data": _contract_json(document, view)}


@router.post("/v1/contracts/list")
def list_contracts() -> dict:
    body = ContractList.model_validate(read_body(router.current_event))
    documents = wiring.contract_service().list(
        body.customer_id,
        include_archived=body.include_archived,
        covering_date=parse_time_param("covering_date", body.covering_date),
        starting_at=parse_time_param("starting_at", body.starting_at),
    )
    start = offset_cursor(body.cursor, "cursor")
    end = start + body.limit
    page = documents[start:end]
    view = contract_view(body.customer_id, body.include_balance, body.include_ledgers) if page else ContractView()
    return {
        "data": [_contract_json(d, view) for d in page],
        "cursor": str(end) if end < len(documents) else None,
    }


@router.post("/v1/contracts/updateEndDate")
def update_end_date() -> dict:
    """An edit of the end date alone: recorded in the edit history, like Metronome's."""
    body = ContractUpdateEndDate.model_validate(read_body(router.current_event))
    ending_before = parse_time_param("ending_before", body.ending_before)
    try:
        wiring.contract_edit_service().edit(
            body.customer_id,
            body.contract_id,
            {"update_contract_end_date": None if ending_before is None else format_rfc3339(ending_before)},
            author=api_key_id(),
            allow_ending_before_finalized=body.allow_ending_before_finalized_invoice is not False,
        )
    except InvalidInput as exc:
        if exc.field == "update_contract_end_date":
            raise InvalidInput("ending_before", exc.rule) from exc
        raise
    return {"data": {"id": body.contract_id}}


@router.post("/v1/contracts/scheduleProServicesInvoice")
def schedule_pro_services_invoice() -> dict:
    """Professional services billed on the contract's SCHEDULED invoice issued at `issued_at`;
    answers that invoice (a draft until it is due)."""
    body = ScheduleProServicesInvoice.model_validate(read_body(router.current_event))
    invoice = wiring.pro_service_invoicing().schedule(
        body.customer_id, body.contract_id, body.issued(), body.lines(), body.header()
    )
    draft = wiring.invoice_service().get(body.customer_id, invoice)
    return {"data": [invoice_json(draft, _catalog_of([draft]))]}


@router.post("/v1/contracts/createHistoricalInvoices")
def create_historical_invoices() -> dict:
    """Past usage invoices from another billing system, stored FINALIZED (services/historical_invoices.py)."""
    body = CreateHistoricalInvoices.model_validate(read_body(router.current_event))
    created = wiring.historical_invoice_service().create(body.inputs(), body.preview)
    products = wiring.contract_service().products()
    return {"data": [invoice_json(DraftInvoice(r.id, r.invoice, contract), products) for r, contract in created]}


@router.post("/v1/contracts/archive")
def archive_contract() -> dict:
    body = ContractArchive.model_validate(read_body(router.current_event))
    document = wiring.contract_service().archive(body.customer_id, body.contract_id)
    return {"data": {"id": document["id"]}}


@router.post("/v1/contracts/getSubscriptionQuantityHistory")
def subscription_quantity_history() -> dict:
    body = SubscriptionQuantityHistory.model_validate(read_body(router.current_event))
    history = wiring.contract_service().subscription_quantity_history(
        body.customer_id, body.contract_id, body.subscription_id
    )
    return {"data": quantity_history_json(history)}


@router.post("/v1/contracts/getSubscriptionSeatsHistory")
def subscription_seats_history() -> dict:
    """A SEAT_BASED subscription's seats over time, one entry per change, oldest first: those
    covering `covering_date`, or overlapping [starting_at, ending_before]."""
    body = SubscriptionSeatsHistory.model_validate(read_body(router.current_event))
    covering, starting_at, ending_before = body.window()
    segments = wiring.contract_service().subscription_seats(body.customer_id, body.contract_id, body.subscription_id)
    if covering is not None:
        segments = tuple(s for s in segments if s.covers(covering))
    if starting_at is not None:
        segments = tuple(s for s in segments if s.ending_before is None or s.ending_before > starting_at)
    if ending_before is not None:
        segments = tuple(s for s in segments if s.starting_at <= ending_before)
    start = offset_cursor(body.cursor, "cursor")
    end = start + (body.limit or 10)
    return {"data": seats_history_json(segments[start:end]), "next_page": str(end) if end < len(segments) else None}


@router.post("/v1/contracts/seatBalances/list")
def list_seat_balances() -> dict:
    """Per-seat balances of the contract's SEAT_BASED subscriptions: the commits and credits that
    recurring ones with INDIVIDUAL allocation make for each seat (services/seat_balances.py); pooled
    ones are no seat's."""
    body = SeatBalancesList.model_validate(read_body(router.current_event))
    window = body.window()
    seats = wiring.contract_service().contract_seat_ids(body.customer_id, body.contract_id, body.subscription_ids)
    if body.seat_ids is not None:
        known = set(seats)
        for index, seat_id in enumerate(body.seat_ids):
            if seat_id not in known and not body.skip_missing_seat_ids:
                raise InvalidInput(f"seat_ids[{index}]", "is not a seat of the contract's SEAT_BASED subscriptions")
        wanted = set(body.seat_ids)
        seats = [s for s in seats if s in wanted]
    start = offset_cursor(body.cursor, "cursor")
    end = start + body.limit
    page = seats[start:end]
    catalog = wiring.catalog_service()
    contract = wiring.contract_service().get(body.customer_id, body.contract_id)
    per_seat = seat_balances.seat_grants(contract, catalog.now(), body.subscription_ids)
    figures = wiring.balance_service().figures(body.customer_id, with_balances=True) if per_seat else None
    return {
        "data": [
            seat_balances.seat_json(seat_id, per_seat.get(seat_id, []), figures, window,
                                    include_grants=body.include_credits_and_commits,
                                    include_ledgers=body.include_credits_and_commits and body.include_ledgers)
            for seat_id in page
        ],
        "pagination": {
            "seats_included": len(page),
            "seats_available_for_next_page": max(len(seats) - end, 0),
            "next_page": str(end) if end < len(seats) else None,
        },
    }


@router.get("/v1/customers/<customer_id>/invoices")
def list_invoices(customer_id: str) -> dict:
    query = router.current_event.query_string_parameters or {}
    drafts, next_offset = wiring.invoice_service().list(
        customer_id,
        offset=offset_cursor(query.get("next_page"), "next_page"),
        limit=page_limit(query),
        status=query.get("status"),
        starting_on=parse_time_param("starting_on", query.get("starting_on")),
        ending_before=parse_time_param("ending_before", query.get("ending_before")),
        contract_id=query.get("contract_id"),
        credit_type_id=query.get("credit_type_id"),
        newest_first=_newest_first(query),
    )
    products = _catalog_of(drafts)
    skip_zero = query.get("skip_zero_qty_line_items", "false").lower() == "true"
    data = with_external_invoices([invoice_json(d, products, skip_zero) for d in drafts])
    return {"data": data, "next_page": None if next_offset is None else str(next_offset)}


# Registered before /invoices/<invoice_id>: the resolver tries dynamic routes in order, and
# "breakdowns" would otherwise be read as an invoice id.
@router.get("/v1/customers/<customer_id>/invoices/breakdowns")
def list_invoice_breakdowns(customer_id: str) -> dict:
    query = router.current_event.query_string_parameters or {}
    breakdowns, next_page = wiring.breakdown_service().list(
        customer_id,
        starting_on=parse_time_param("starting_on", query.get("starting_on")),
        ending_before=parse_time_param("ending_before", query.get("ending_before")),
        window_size=query.get("window_size"),
        status=query.get("status"),
        credit_type_id=query.get("credit_type_id"),
        newest_first=_newest_first(query),
        cursor=query.get("next_page"),
        limit=page_limit(query),
    )
    products = _catalog_of([b.draft for b in breakdowns])
    skip_zero = query.get("skip_zero_qty_line_items", "false").lower() == "true"
    data = [
        invoice_json(b.draft, products, skip_zero)
        | {
            "breakdown_start_timestamp": format_rfc3339(b.window.starting_at),
            "breakdown_end_timestamp": format_rfc3339(b.window.ending_before),
        }
        for b in breakdowns
    ]
    return {"data": data, "next_page": next_page}


@router.get("/v1/customers/<customer_id>/invoices/<invoice_id>")
def get_invoice(customer_id: str, invoice_id: str) -> dict:
    query = router.current_event.query_string_parameters or {}
    skip_zero = query.get("skip_zero_qty_line_items", "false").lower() == "true"
    return {"data": invoice_answer(customer_id, invoice_id, skip_zero)}


def invoice_answer(customer_id: str, invoice_id: str, skip_zero_quantity: bool = False) -> dict:
    """The invoice's `data` as GET .../invoices/{invoice_id} answers it (the PDF and the hosted
    page render this same answer); NotFound for an unknown invoice or another customer's."""
    draft = wiring.invoice_service().get(customer_id, invoice_id)
    return with_external_invoices([invoice_json(draft, _catalog_of([draft]), skip_zero_quantity)])[0]


def _catalog_of(drafts: list[DraftInvoice]) -> Mapping[str, Product]:
    """The products to show line items with: those a draft was priced with, else read now (stored
    invoices only)."""
    for draft in drafts:
        if draft.products is not None:
            return draft.products
    return wiring.contract_service().products()


def _newest_first(query: dict) -> bool:
    sort = query.get("sort", "date_asc")
    if sort not in ("date_asc", "date_desc"):
        raise InvalidInput("sort", "must be date_asc or date_desc")
    return sort == "date_desc"
