"""Packages (/v1/packages/*): contract templates with times relative to the contract's start."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.contract_models import parse_time_param
from tally.api.models import read_body
from tally.api.package_models import ContractsOnPackageList, PackageCreate, PackageList, PackageRef, package_json, page_size
from tally.api.routes.contract_edits import api_key_id
from tally.services.packages import cursor_problem

router = Router()


def _query() -> dict:
    return dict(router.current_event.query_string_parameters or {})


def _packages_json(packages: list[dict]) -> list[dict]:
    service, catalog = wiring.package_service(), wiring.catalog_service()
    windows = service.alias_windows(packages)
    products, names = catalog.products(), catalog.credit_type_names()
    return [package_json(p, windows[p["id"]], products, names) for p in packages]


@router.post("/v1/packages/create")
def create_package() -> dict:
    body = PackageCreate.model_validate(read_body(router.current_event))
    package = wiring.package_service().create(body.terms(), body.uniqueness_key, api_key_id())
    return {"data": {"id": package["id"]}}


@router.post("/v1/packages/get")
def get_package() -> dict:
    body = PackageRef.model_validate(read_body(router.current_event))
    return {"data": _packages_json([wiring.package_service().get(body.package_id)])[0]}


@router.post("/v1/packages/list")
def list_packages() -> dict:
    raw = (router.current_event.body or "").strip()  # the SDK may leave a list's body empty
    body = PackageList.model_validate(read_body(router.current_event) if raw else {})
    query = _query()
    cursor = query.get("next_page") or None
    cursor_problem(cursor)
    packages, next_page = wiring.package_service().list(body.archive_filter, cursor, page_size(query, 10))
    return {"data": _packages_json(packages), "next_page": next_page}


@router.post("/v1/packages/archive")
def archive_package() -> dict:
    body = PackageRef.model_validate(read_body(router.current_event))
    return {"data": {"id": wiring.package_service().archive(body.package_id)["id"]}}


@router.post("/v1/packages/listContractsOnPackage")
def list_contracts_on_package() -> dict:
    body = ContractsOnPackageList.model_validate(read_body(router.current_event))
    query = _query()
    cursor = query.get("next_page") or None
    cursor_problem(cursor)
    contracts, next_page = wiring.package_service().contracts_on(
        body.package_id,
        covering_date=parse_time_param("covering_date", body.covering_date),
        starting_at=parse_time_param("starting_at", body.starting_at),
        include_archived=body.include_archived,
        after=cursor,
        limit=page_size(query, 25),
    )
    return {
        "data": [
            {k: c[k] for k in ("starting_at", "ending_before", "archived_at") if c.get(k)}
            | {"contract_id": c["id"], "customer_id": c["customer_id"]}
            for c in contracts
        ],
        "next_page": next_page,
    }
