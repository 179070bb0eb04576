"""/v1/packages/* through metronome-sdk in strict mode on the local stack: a package created with an
alias, a contract created from it by that alias and read back with its terms at the right offsets
from its start, the package's contracts listed, the package archived (no more contracts from it),
and a create that mixes a package with its own terms refused with a 400 naming the field."""

from __future__ import annotations

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, current_hour, rfc3339, unique

pytestmark = pytest.mark.system


def test_a_contract_from_a_package_alias_has_the_package_terms_at_its_offsets(local_stack, api):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as sdk:
        tag = unique("pkg")
        start = current_hour() - 3 * DAY
        metric = sdk.v1.billable_metrics.create(
            name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
        calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
        fee = sdk.v1.contracts.products.create(name=f"{tag} fee", type="FIXED").data.id
        card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
        sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                              price=10, starting_at=rfc3339(start - 30 * DAY))
        package = sdk.v1.packages.create(
            name=f"{tag} Starter", contract_name="Starter", rate_card_id=card, aliases=[{"name": f"{tag}-starter"}],
            duration={"unit": "MONTHS", "value": 12},
            commits=[{"product_id": fee, "type": "PREPAID", "access_schedule": {"schedule_items": [
                {"amount": 1000, "starting_at_offset": {"unit": "DAYS", "value": 0}, "duration": {"unit": "MONTHS", "value": 1}}]}}],
            overrides=[{"override_specifiers": [{"product_id": calls}], "type": "MULTIPLIER", "multiplier": 0.5,
                        "starting_at_offset": {"unit": "WEEKS", "value": 1}, "duration": {"unit": "DAYS", "value": 7}}],
            usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        ).data.id
        shown = sdk.v1.packages.retrieve(package_id=package).data
        assert (shown.name, shown.rate_card_id, [a.name for a in shown.aliases]) == (f"{tag} Starter", card, [f"{tag}-starter"])
        assert shown.commits[0].access_schedule.schedule_items[0].duration.unit == "MONTHS"

        customer = sdk.v1.customers.create(name=tag).data.id
        contract_id = sdk.v1.contracts.create(customer_id=customer, package_alias=f"{tag}-starter",
                                              starting_at=rfc3339(start), custom_fields={}).data.id
        contract = sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data
        assert contract.package_id == package and contract.current.rate_card_id == card
        assert contract.current.name == "Starter"
        (item,) = contract.current.commits[0].access_schedule.schedule_items
        assert (item.amount, item.starting_at) == (1000, start)
        assert item.ending_before.month == (start.month % 12) + 1
        (override,) = contract.current.overrides
        assert (override.starting_at, override.ending_before) == (start + 7 * DAY, start + 14 * DAY)
        assert contract.current.ending_before.year == start.year + 1

        # An ordinary contract: an edit of its end and its draft invoices work as on any other.
        sdk.v1.contracts.update_end_date(customer_id=customer, contract_id=contract_id, ending_before=rfc3339(start + 60 * DAY))
        assert sdk.v1.contracts.retrieve(customer_id=customer, contract_id=contract_id).data.current.ending_before == start + 60 * DAY
        assert sdk.v1.customers.invoices.list(customer_id=customer).data

        listed = sdk.v1.packages.list_contracts_on_package(package_id=package, limit=10).data
        assert [(c.contract_id, c.customer_id, c.starting_at) for c in listed] == [(contract_id, customer, start)]

        mixed = api.post("/v1/contracts/create", json={"customer_id": customer, "package_id": package,
                                                        "starting_at": rfc3339(start), "rate_card_id": card})
        assert mixed.status_code == 400 and "rate_card_id" in mixed.text

        sdk.v1.packages.archive(package_id=package)
        assert sdk.v1.packages.retrieve(package_id=package).data.archived_at is not None
        assert package in [p.id for p in sdk.v1.packages.list(archive_filter="ARCHIVED")]
        refused = api.post("/v1/contracts/create", json={"customer_id": customer, "package_id": package,
                                                          "starting_at": rfc3339(start + 30 * DAY)})
        assert refused.status_code == 400 and "package_id" in refused.text
