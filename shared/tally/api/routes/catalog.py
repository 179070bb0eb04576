"""The catalog: products, pricing units (credit types), rate cards and their rates."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.catalog_models import (
    CreditTypeArchive,
    CreditTypeCreate,
    ProductArchive,
    ProductCreate,
    ProductGet,
    ProductList,
    ProductUpdate,
    RateAdd,
    RateCardCreate,
    RateCardId,
    RateCardList,
    RateCardProductOrderSet,
    RateCardProductsMove,
    RateCardUpdate,
    RatesAdd,
    RatesGet,
    credit_type_json,
    product_json,
    rate_card_json,
    rate_json,
    rate_schedule_json,
)
from tally.api.models import parse_instant, read_body
from tally.api.pagination import paginate_list

router = Router()


def _body() -> dict:
    return read_body(router.current_event)


def _optional_body() -> dict:
    """List routes are POSTs whose body the SDK may leave empty."""
    return _body() if (router.current_event.body or "").strip() else {}


def _query() -> dict:
    return router.current_event.query_string_parameters or {}


# -- products ------------------------------------------------------------------------------------
@router.post("/v1/contract-pricing/products/create")
def create_product() -> dict:
    body = ProductCreate.model_validate(_body())
    product_type, version = body.to_domain()
    record = wiring.catalog_service().create_product(product_type, version, body.custom_fields)
    return {"data": {"id": record.product.id}}


@router.post("/v1/contract-pricing/products/get")
def get_product() -> dict:
    body = ProductGet.model_validate(_body())
    service = wiring.catalog_service()
    return {"data": product_json(service.product_record(body.id), service.now())}


@router.post("/v1/contract-pricing/products/list")
def list_products() -> dict:
    body = ProductList.model_validate(_optional_body())
    service = wiring.catalog_service()
    now = service.now()
    return paginate_list([product_json(r, now) for r in service.product_records(body.archive_filter)], _query())


@router.post("/v1/contract-pricing/products/update")
def update_product() -> dict:
    body = ProductUpdate.model_validate(_body())
    record = wiring.catalog_service().update_product(body.product_id, body.starting(), body.changes())
    return {"data": {"id": record.product.id}}


@router.post("/v1/contract-pricing/products/archive")
def archive_product() -> dict:
    body = ProductArchive.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().archive_product(body.product_id).product.id}}


# -- pricing units -------------------------------------------------------------------------------
@router.get("/v1/credit-types/list")
def list_credit_types() -> dict:
    return paginate_list([credit_type_json(r) for r in wiring.catalog_service().credit_types()], _query())


@router.post("/v1/credit-types/create")
def create_credit_type() -> dict:
    body = CreditTypeCreate.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().create_credit_type(body.name).credit_type.id}}


@router.post("/v1/credit-types/archive")
def archive_credit_type() -> dict:
    body = CreditTypeArchive.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().archive_credit_type(body.id).credit_type.id}}


# -- rate cards ----------------------------------------------------------------------------------
@router.post("/v1/contract-pricing/rate-cards/create")
def create_rate_card() -> dict:
    body = RateCardCreate.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().create_rate_card(body.name, **body.to_kwargs()).id}}


@router.post("/v1/contract-pricing/rate-cards/get")
def get_rate_card() -> dict:
    body = RateCardId.model_validate(_body())
    card, _ = wiring.catalog_service().rate_card_record(body.id)
    return {"data": rate_card_json(card)}


@router.post("/v1/contract-pricing/rate-cards/list")
def list_rate_cards() -> dict:
    RateCardList.model_validate(_optional_body())
    return paginate_list([rate_card_json(c) for c in wiring.catalog_service().rate_card_records()], _query())


@router.post("/v1/contract-pricing/rate-cards/update")
def update_rate_card() -> dict:
    body = RateCardUpdate.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().update_rate_card(body.rate_card_id, **body.to_kwargs()).id}}


@router.post("/v1/contract-pricing/rate-cards/setRateCardProductsOrder")
def set_rate_card_products_order() -> dict:
    body = RateCardProductOrderSet.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().set_product_order(body.rate_card_id, body.product_order).id}}


@router.post("/v1/contract-pricing/rate-cards/moveRateCardProducts")
def move_rate_card_products() -> dict:
    body = RateCardProductsMove.model_validate(_body())
    moves = [(m.product_id, m.position) for m in body.product_moves]
    return {"data": {"id": wiring.catalog_service().move_products(body.rate_card_id, moves).id}}


@router.post("/v1/contract-pricing/rate-cards/archive")
def archive_rate_card() -> dict:
    body = RateCardId.model_validate(_body())
    return {"data": {"id": wiring.catalog_service().archive_rate_card(body.id).id}}


# -- rates ---------------------------------------------------------------------------------------
@router.post("/v1/contract-pricing/rate-cards/addRate")
def add_rate() -> dict:
    body = RateAdd.model_validate(_body())
    added = wiring.catalog_service().add_rates(body.rate_card_id, [body.to_draft("")], single=True)
    return {"data": rate_json(added[0])}


@router.post("/v1/contract-pricing/rate-cards/addRates")
def add_rates() -> dict:
    body = RatesAdd.model_validate(_body())
    drafts = [rate.to_draft(f"rates[{index}].") for index, rate in enumerate(body.rates)]
    wiring.catalog_service().add_rates(body.rate_card_id, drafts)
    return {"data": {"id": body.rate_card_id}}


@router.post("/v1/contract-pricing/rate-cards/getRates")
def get_rates() -> dict:
    body = RatesGet.model_validate(_body())
    at = parse_instant("at", body.at)
    selectors = [s.to_domain() for s in body.selectors or ()]
    found = wiring.catalog_service().rates_at(body.rate_card_id, at, selectors)
    return paginate_list([rate_schedule_json(rate, record, at) for rate, record in found], _query())
