"""Embeddable dashboards: minting a customer's dashboard URL, and reading what each page shows.

Every figure comes from the services the API's own routes read (draft invoices priced from the
counters, /v1/usage's daily windows, the burn-down behind balances and ledgers), never from the
events, so a page equals the API's JSON and costs what those reads cost."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Callable, Mapping

from tally.billing.customers import Customer
from tally.billing.dashboards import URL_LIFETIME, DashboardView, GroupKeyOverride
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_DASHBOARD_INVOICES, MAX_DASHBOARD_METRICS
from tally.billing.metrics import BillableMetric
from tally.billing.page_tokens import PageKind
from tally.billing.pricing.catalog import Product, ProductType
from tally.billing.pricing.periods import Period
from tally.billing.time import DAY
from tally.services.invoices import DraftInvoice, InvoiceService
from tally.services.usage import MetricQuery, UsageService, WindowSize


@dataclass(frozen=True, slots=True)
class DayUsage:
    starting_at: datetime
    ending_before: datetime
    value: Decimal | None  # None: the day has not begun yet (not read)


@dataclass(frozen=True, slots=True)
class GroupUsage:
    override: GroupKeyOverride
    rows: list[tuple[str | None, Decimal | None]]  # (group value, its usage over the period so far)


@dataclass(frozen=True, slots=True)
class MetricUsage:
    metric: BillableMetric
    days: list[DayUsage]
    groups: list[GroupUsage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ContractUsage:
    contract_id: str
    period: Period
    metrics: list[MetricUsage]
    more_metrics: int = 0  # the card's metrics beyond MAX_DASHBOARD_METRICS, not shown


@dataclass(frozen=True, slots=True)
class GrantRow:
    id: str
    kind: str  # PREPAID, POSTPAID or CREDIT
    name: str
    product_name: str
    credit_type_id: str
    granted: Decimal  # the access schedule's amounts together
    balance: Decimal
    starting_at: str | None
    ending_before: str | None
    ledger: list  # ledger entries (billing.balances), oldest first


@dataclass(frozen=True, slots=True)
class DashboardData:
    view: DashboardView
    customer: Customer
    now: datetime
    credit_type_names: Mapping[str, str]
    products: Mapping[str, Product]
    usage: list[ContractUsage] = field(default_factory=list)
    invoices: list[DraftInvoice] = field(default_factory=list)
    grants: list[GrantRow] = field(default_factory=list)


class DashboardService:
    def __init__(
        self,
        invoices: InvoiceService,
        usage: UsageService,
        balances,  # BalanceService
        products: Callable[[], Mapping[str, Product]],
        metrics: Callable[[], list[BillableMetric]],
        credit_type_names: Callable[[], Mapping[str, str]],
        links,  # PageLinks
        clock: Callable[[], datetime],
    ) -> None:
        self._invoices = invoices
        self._usage = usage
        self._balances = balances
        self._products = products
        self._metrics = metrics
        self._credit_type_names = credit_type_names
        self._links = links
        self._clock = clock

    # -- minting -----------------------------------------------------------------------------------
    def embeddable_url(self, view: DashboardView, option_index: Mapping[str, int], group_index: Mapping[str, int]):
        """A signed link to `view`, valid for URL_LIFETIME. 404 for an unknown customer; options that
        name a contract or credit type the customer does not have, and group keys no billable metric
        has, are a 400 naming the field (`option_index`, `group_index`: where each was given)."""
        self._usage.customer(view.customer_id)  # NotFound: 404
        contract_id = view.option("contract_id")
        if contract_id is not None and contract_id not in self._invoices.contract_ids(view.customer_id):
            raise InvalidInput(f"dashboard_options[{option_index['contract_id']}].value",
                               f"contract {contract_id} is not a contract of customer {view.customer_id}")
        credit_type_id = view.option("credit_ledger_credit_type_id")
        if credit_type_id is not None and credit_type_id not in self._credit_type_names():
            raise InvalidInput(f"dashboard_options[{option_index['credit_ledger_credit_type_id']}].value",
                               f"credit type {credit_type_id} not found")
        if view.group_key_overrides:
            # a metric's group key of one property: what /v1/usage/groups can group its usage by
            keys = {key[0] for metric in self._metrics() for key in metric.group_keys if len(key) == 1}
            for override in view.group_key_overrides:
                if override.group_key_name not in keys:
                    raise InvalidInput(f"bm_group_key_overrides[{group_index[override.group_key_name]}].group_key_name",
                                       f"{override.group_key_name} is not a group key of any billable metric")
        try:
            return self._links.mint(PageKind.DASHBOARD, view.customer_id, view.scope(), lifetime=URL_LIFETIME)
        except InvalidInput as exc:  # the token would not fit a URL: the view's names are too long
            raise InvalidInput("bm_group_key_overrides" if view.group_key_overrides else "color_overrides",
                               exc.message.removeprefix("scope: ")) from exc

    # -- the pages' data ---------------------------------------------------------------------------
    def data(self, view: DashboardView) -> DashboardData:
        customer = self._usage.customer(view.customer_id)
        now = self._clock()
        base = DashboardData(view, customer, now, self._credit_type_names(), self._products())
        if view.dashboard == "usage":
            return _with(base, usage=self._usage_of(customer, now, base.products, view))
        if view.dashboard == "invoices":
            return _with(base, invoices=self._invoices_of(view))
        return _with(base, grants=self._grants_of(view, base.products))

    def _usage_of(self, customer: Customer, now: datetime, products: Mapping[str, Product],
                  view: DashboardView) -> list[ContractUsage]:
        """Per current contract, its period's daily usage of each metric its rate card prices (the
        first MAX_DASHBOARD_METRICS, in the card's order): the
        windows /v1/usage answers for window_size DAY from the period's start, read up to the day
        that holds `now` (later days are not read)."""
        _, due = self._invoices.due_periods(customer.id)
        result = []
        for d in due:
            if not d.period.contains(now):
                continue
            metric_ids = _metrics_of_rate_card(d.contract.rate_card.rates, products, d.period.starting_at)
            shown = metric_ids[:MAX_DASHBOARD_METRICS]
            start = d.period.starting_at
            read_until = min(d.period.ending_before, start + DAY * ((now - start) // DAY + 1))
            days_total = -(-(d.period.ending_before - start) // DAY)  # ceiling: a last, shorter day
            metrics = []
            for metric_id in shown:  # one series a read: a year of days fits /v1/usage's answer bound
                read = self._usage.usage([customer], [MetricQuery(metric_id)], start, read_until, WindowSize.DAY)
                if not read:
                    continue
                days = [DayUsage(w.starting_on, w.ending_before, w.value) for w in read]
                for n in range(len(days), days_total):  # the period's days still to come
                    day_start = start + DAY * n
                    days.append(DayUsage(day_start, min(day_start + DAY, d.period.ending_before), None))
                metric = read[0].metric
                groups = []
                for override in view.group_key_overrides:
                    if (override.group_key_name,) in metric.group_keys:
                        rows = self._usage.grouped(customer, metric, (override.group_key_name,), {}, start, read_until, WindowSize.NONE)
                        groups.append(GroupUsage(override, [(r.group[override.group_key_name], r.value) for r in rows]))
                metrics.append(MetricUsage(metric, days, groups))
            result.append(ContractUsage(d.contract.id, d.period, metrics, len(metric_ids) - len(shown)))
        return result

    def _invoices_of(self, view: DashboardView) -> list[DraftInvoice]:
        """The newest MAX_DASHBOARD_INVOICES invoices (GET /v1/customers/{id}/invoices, date_desc),
        narrowed by the view's options."""
        statuses = view.invoice_statuses
        drafts, _ = self._invoices.list(
            view.customer_id,
            limit=MAX_DASHBOARD_INVOICES,
            status=statuses[0] if len(statuses) == 1 else None,
            contract_id=view.option("contract_id"),
            newest_first=True,
        )
        invoice_type = view.option("invoice_type")
        billable = view.option("billable_status_filter", "all")
        return [
            d for d in drafts
            if d.invoice.status in statuses
            and (invoice_type is None or d.invoice.type.value == invoice_type)
            and (billable == "all" or (billable == "billable") == d.invoice.billable)
        ]

    def _grants_of(self, view: DashboardView, products: Mapping[str, Product]) -> list[GrantRow]:
        """The customer's commits and credits, contract-level ones too, with the balances and
        ledgers /v1/contracts/customerBalances/list shows (one burn-down)."""
        figures = self._balances.figures(view.customer_id, with_balances=True)
        credit_type_id = view.option("credit_ledger_credit_type_id")
        rows = []
        for grant in figures.grants.grants:
            doc = figures.grants.documents[grant.id]
            if doc["type"] not in view.grant_kinds:
                continue
            if credit_type_id is not None and doc["credit_type_id"] != credit_type_id:
                continue
            product = products.get(doc["product_id"])
            product_name = product.versions[-1].name if product else doc["product_id"]
            schedule = doc["access_schedule"]
            rows.append(GrantRow(
                id=grant.id,
                kind=doc["type"],
                name=doc.get("name") or product_name,
                product_name=product_name,
                credit_type_id=doc["credit_type_id"],
                granted=sum((Decimal(str(s["amount"])) for s in schedule), Decimal(0)),
                balance=figures.balance(grant.id) or Decimal(0),
                starting_at=schedule[0]["starting_at"] if schedule else None,
                ending_before=schedule[-1]["ending_before"] if schedule else None,
                ledger=list(figures.ledger(grant.id) or ()),
            ))
        rows.sort(key=lambda r: (r.starting_at or "", r.id))
        return rows


def _with(data: DashboardData, **changes) -> DashboardData:
    return replace(data, **changes)


def _metrics_of_rate_card(rates, products: Mapping[str, Product], at: datetime) -> list[str]:
    """The billable metrics of the card's USAGE products, in the card's order, each once."""
    ids: list[str] = []
    for rate in rates:
        product = products.get(rate.product_id)
        if product is None or product.type is not ProductType.USAGE:
            continue
        metric_id = product.at(at).billable_metric_id
        if metric_id is not None and metric_id not in ids:
            ids.append(metric_id)
    return ids

