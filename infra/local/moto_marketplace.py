"""moto's AWS Marketplace metering, made to behave as AWS does for the local stack (issue 17).

moto 5.2's BatchMeterUsage answers but keeps nothing (it never appends to records_by_product, so
it never reports DuplicateRecord), and it answers CustomerNotSubscribed to every customer not put
in its backend by hand, which no API can do. Locally, then: every customer is subscribed to every
product (there is no Marketplace to subscribe through); a record is kept; an identical record is
the same record (same MeteringRecordId, kept once, as AWS deduplicates); another quantity for the
same customer, dimension and timestamp is a DuplicateRecord. `held(product_code)` lists them.
"""

from __future__ import annotations

from typing import Any

from moto.meteringmarketplace.models import MeteringMarketplaceBackend, Result

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True

    def batch_meter_usage(self: MeteringMarketplaceBackend, product_code: str, usage_records: list[dict[str, Any]]):
        results = []
        for usage in usage_records:
            result = Result(**{"CustomerIdentifier": usage.get("CustomerIdentifier") or usage.get("CustomerAWSAccountId"),
                               "Timestamp": usage["Timestamp"], "Dimension": usage["Dimension"],
                               "Quantity": usage.get("Quantity", 0)})
            kept = self.records_by_product[product_code]
            same = [r for r in kept if r.usage_record == result.usage_record]
            if same:
                result["MeteringRecordId"] = same[0].metering_record_id
            elif kept.is_duplicate(result):
                result.status = Result.DUPLICATE_RECORD
            else:
                kept.append(result)
            results.append(result)
        return results

    MeteringMarketplaceBackend.batch_meter_usage = batch_meter_usage


def held(backend: MeteringMarketplaceBackend, product_code: str) -> list[tuple]:
    """(timestamp, customer, dimension, quantity) of each record the product holds."""
    return [(r.usage_record.timestamp, r.usage_record.customer_identifier, r.usage_record.dimension,
             r.usage_record.quantity) for r in backend.records_by_product[product_code]]
