from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import UsageGroups, UsageList, parse_instant, read_body
from tally.api.pagination import page_limit, paginate_list
from tally.billing.errors import InvalidInput
from tally.billing.time import format_rfc3339
from tally.services.usage import MetricQuery, WindowSize

router = Router()
CUSTOMERS_PER_PAGE = 25


@router.post("/v1/usage")
def list_usage() -> dict:
    body = UsageList.model_validate(read_body(router.current_event))
    query = router.current_event.query_string_parameters or {}
    service = wiring.usage_service()
    start = parse_instant("starting_on", body.starting_on)
    end = parse_instant("ending_before", body.ending_before)
    queries = None
    if body.billable_metrics is not None:
        queries = [
            MetricQuery(
                m.id,
                m.group_by.key if m.group_by else None,
                tuple(m.group_by.values) if m.group_by and m.group_by.values is not None else None,
            )
            for m in body.billable_metrics
        ]
    plan = service.plan(queries, start, end, WindowSize(body.window_size.upper()))
    next_page = None
    if body.customer_ids is not None:
        customers = [service.customer(cid, f"customer_ids[{i}]") for i, cid in enumerate(body.customer_ids)]
    else:  # every customer, as many a page as one answer can hold
        page = wiring.customer_service().list(plan.customers_per_page(CUSTOMERS_PER_PAGE), query.get("next_page"))
        customers, next_page = page.items, page.next_page
    windows = service.read(customers, plan)
    data = []
    for w in windows:
        item = {
            "customer_id": w.customer_id,
            "billable_metric_id": w.metric.id,
            "billable_metric_name": w.metric.name,
            "start_timestamp": format_rfc3339(w.starting_on),
            "end_timestamp": format_rfc3339(w.ending_before),
            "value": w.value,
        }
        if w.groups is not None:
            item["groups"] = w.groups
        data.append(item)
    return {"data": data, "next_page": next_page}


@router.post("/v1/usage/groups")
def list_usage_groups() -> dict:
    body = UsageGroups.model_validate(read_body(router.current_event))
    query = router.current_event.query_string_parameters or {}
    if body.current_period:
        raise InvalidInput("current_period", "needs a contract billing period, which this deployment cannot resolve yet; pass starting_on and ending_before")
    if body.starting_on is None:
        raise InvalidInput("starting_on", "is required")
    if body.ending_before is None:
        raise InvalidInput("ending_before", "is required")
    if body.group_key is not None and body.group_by is not None:
        raise InvalidInput("group_key", "cannot be used together with group_by")
    service = wiring.usage_service()
    customer = service.customer(body.customer_id)
    metric = service.metric(body.billable_metric_id)
    filters = dict(body.group_filters or {})
    if body.group_by is not None:
        group_key: tuple[str, ...] = (body.group_by.key,)
        if body.group_by.values:
            filters[body.group_by.key] = body.group_by.values
    elif body.group_key is not None:
        group_key = tuple(body.group_key)
    else:
        group_key = ()
    rows = service.grouped(
        customer,
        metric,
        group_key,
        filters,
        parse_instant("starting_on", body.starting_on),
        parse_instant("ending_before", body.ending_before),
        WindowSize(body.window_size.upper()),
    )
    data = []
    for row in rows:
        item = {
            "starting_on": format_rfc3339(row.starting_on),
            "ending_before": format_rfc3339(row.ending_before),
            "group": row.group,
            "value": row.value,
        }
        if len(group_key) == 1:
            item["group_key"] = group_key[0]
            item["group_value"] = row.group[group_key[0]]
        data.append(item)
    return paginate_list(data, query, page_limit(query))
