from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import EventsSearch, metric_json, read_body
from tally.billing.time import format_rfc3339

router = Router()


@router.post("/v1/events/search")
def search_events() -> list:
    body = EventsSearch.model_validate(read_body(router.current_event))
    result = []
    for hit in wiring.event_search_service().search(body.transactionIds):
        event = hit.stored.event
        result.append(
            {
                "id": hit.stored.id,
                "transaction_id": event.transaction_id,
                "customer_id": event.customer_id,
                "event_type": event.event_type,
                "timestamp": format_rfc3339(event.timestamp),
                "properties": event.properties,
                "is_duplicate": hit.stored.is_duplicate,
                # processed_at: when Tally accepted and stored this receipt
                "processed_at": format_rfc3339(hit.stored.ingested_at),
                "matched_customer": None
                if hit.matched_customer is None
                else {"id": hit.matched_customer.id, "name": hit.matched_customer.name},
                "matched_billable_metrics": [metric_json(m) for m in hit.matched_metrics],
            }
        )
    return result
