"""The embeddable dashboards as HTML pages: usage, invoices, credits (and commits_and_credits).

Pure: DashboardData (tally.services.dashboards) in, a Page out. Built on the public pages' layout
(tally.rendering.html: escaping, CSP by style hash, embeddable framing), with the view's colors as
CSS variables after the base ones. Every figure a table shows is written by the invoice document's
formatters and also carried exactly, as the API writes it, in the cell's `data-value` (what the
browser test compares with the API's JSON)."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Mapping

from tally.billing.dashboards import DashboardView
from tally.billing.time import parse_rfc3339
from tally.billing.invoice_document import format_date, format_money, format_period, format_quantity
from tally.rendering.html import BASE_CSS, Markup, Page, el, page
from tally.rendering.usage_chart import Day, daily_usage_svg

TITLES = {"usage": "Usage", "invoices": "Invoices", "credits": "Credits", "commits_and_credits": "Commits and credits"}
MAX_LINES_SHOWN = 25  # line items listed under one invoice; the hosted page has them all

# The view's colors onto the base layout's roles (tally.rendering.html PALETTE), then the
# dashboards' own. A later `:root` rule wins, so the base CSS stays as it is.
_ROLES = {
    "ink": "Gray_dark", "muted": "Gray_medium", "paper": "White", "surface": "Gray_extralight",
    "rule": "Gray_light", "link": "Action",
}
_DASHBOARD_CSS = """
a:hover{color:var(--action-hover)}
h1,h2{color:var(--primary-medium)}
h3{font-size:1rem;margin:1.5rem 0 .25rem}
.badge{border:1px solid currentColor;background:var(--paper)}
.badge-draft{color:var(--ink)}
.badge-finalized{color:var(--primary-green)}
.badge-void{color:var(--primary-red)}
.drawn{color:var(--primary-red)}
.added{color:var(--primary-green)}
.chart{display:block;max-width:45rem}
progress{appearance:none;width:8rem;height:.6rem;border:0;border-radius:4px;background:var(--progress-bg);color:var(--progress-bar)}
progress::-webkit-progress-bar{background:var(--progress-bg);border-radius:4px}
progress::-webkit-progress-value{background:var(--progress-bar);border-radius:4px}
progress::-moz-progress-bar{background:var(--progress-bar);border-radius:4px}
details{margin:.25rem 0}
"""


def _css(view: DashboardView) -> str:
    palette = view.palette
    variables = {role: palette[name] for role, name in _ROLES.items()} | {
        "action-hover": palette["Action_hover"], "primary-medium": palette["Primary_medium"],
        "primary-green": palette["Primary_green"], "primary-red": palette["Primary_red"],
        "progress-bar": palette["Progress_bar"], "progress-bg": palette["Progress_bar_background"],
    }
    return BASE_CSS + ":root{" + "".join(f"--{k}:{v};" for k, v in variables.items()) + "}" + _DASHBOARD_CSS


def _number_cell(value: Decimal | None, text: str) -> Markup:
    return el("td", {"class": "num", "data-value": "" if value is None else str(value)}, text)


def _header(data, title: str) -> Markup:
    return el("header", {},
              el("h1", {}, title),
              el("p", {"class": "muted"}, data.customer.name, " · as of ", format_date(data.now),
                 f" {data.now:%H:%M} UTC"))


def render(data, invoice_links: Callable[[str], tuple[str, str]] | None = None) -> Page:
    """The page of `data.view.dashboard`. `invoice_links(invoice_id)`: its (hosted page, PDF) URLs."""
    view = data.view
    title = TITLES[view.dashboard]
    if view.dashboard == "usage":
        body = _usage(data)
    elif view.dashboard == "invoices":
        body = _invoices(data, invoice_links)
    else:
        body = _credits(data)
    return page(f"{title} · {data.customer.name}", el("main", {}, _header(data, title), body),
                css=_css(view), embeddable=True)


# -- usage -------------------------------------------------------------------------------------------
def _usage(data) -> Markup:
    if not data.usage:
        return el("p", {}, "No contract is in effect now, so there is no billing period to show.")
    palette = data.view.palette
    sections = []
    chart_number = 0
    for contract in data.usage:
        period = format_period(contract.period.starting_at, contract.period.ending_before)
        parts = [el("h2", {}, "Billing period ", period)]
        if not contract.metrics:
            parts.append(el("p", {}, "This contract prices no usage."))
        for index, metric in enumerate(contract.metrics):
            chart_number += 1
            name = metric.metric.name
            read = [d for d in metric.days if d.value is not None or d.starting_at <= data.now]
            total = sum((d.value for d in read if d.value is not None), Decimal(0))
            svg = daily_usage_svg(
                f"chart-{chart_number}", f"Daily {name}, {period}",
                [Day(d.starting_at, d.value if d.starting_at <= data.now else None) for d in metric.days],
                bar_color=palette[f"UsageLine_{index % 10}"], grid_color=palette["Gray_light"],
                text_color=palette["Gray_dark"], plot_color=palette["Primary_light"],
            )
            rows = [
                el("tr", {}, el("th", {"scope": "row"}, format_date(d.starting_at)),
                   _number_cell(d.value, "—" if d.value is None else format_quantity(d.value)))
                for d in read
            ]
            table = el("table", {"data-metric-id": metric.metric.id},
                       el("caption", {}, f"Daily {name}"),
                       el("thead", {}, el("tr", {}, el("th", {"scope": "col"}, "Day"),
                                          el("th", {"scope": "col", "class": "num"}, name))),
                       el("tbody", {}, rows),
                       el("tfoot", {}, el("tr", {}, el("th", {"scope": "row"}, "Total so far"),
                                          _number_cell(total, format_quantity(total)))))
            parts.append(el("section", {"class": "metric", "data-metric-id": metric.metric.id},
                            el("h3", {}, name), Markup(svg), table, [_groups(name, g) for g in metric.groups]))
        if contract.more_metrics:
            more = contract.more_metrics
            parts.append(el("p", {"class": "muted"},
                            f"and {more:,} more metric{'s' if more != 1 else ''} on this contract's rate card, not charted here"))
        sections.append(el("section", {"class": "period", "data-contract-id": contract.contract_id}, parts))
    return Markup("".join(sections))


def _groups(metric_name: str, groups) -> Markup:
    override = groups.override
    heading = override.display_name or override.group_key_name
    rows = [
        el("tr", {}, el("th", {"scope": "row"}, override.value_name(value)),
           _number_cell(usage, "—" if usage is None else format_quantity(usage)))
        for value, usage in groups.rows
    ]
    return el("table", {"data-group-key": override.group_key_name},
              el("caption", {}, f"{metric_name} by {heading}, this period so far"),
              el("thead", {}, el("tr", {}, el("th", {"scope": "col"}, heading),
                                 el("th", {"scope": "col", "class": "num"}, metric_name))),
              el("tbody", {}, rows or el("tr", {}, el("td", {"colspan": "2"}, "No usage yet."))))


# -- invoices ----------------------------------------------------------------------------------------
def _credit_type(ct) -> dict:
    return {"id": ct.id, "name": ct.name}


def _invoices(data, invoice_links) -> Markup:
    if not data.invoices:
        return el("p", {}, "No invoices to show.")
    show_zero = data.view.flag("show_zero_usage_line_items")
    rows = []
    for draft in data.invoices:
        invoice = draft.invoice
        credit_type = _credit_type(invoice.credit_type)
        status = invoice.status
        page_url, pdf_url = invoice_links(draft.id) if invoice_links else (None, None)
        lines = [line for line in invoice.line_items if show_zero or line.quantity != 0]
        shown = lines[:MAX_LINES_SHOWN]
        details = None
        if lines:
            details = el("details", {},
                         el("summary", {}, f"{len(lines):,} line item{'s' if len(lines) != 1 else ''}"),
                         el("table", {},
                            el("caption", {"class": "visually-hidden"}, "Line items"),
                            el("thead", {}, el("tr", {}, el("th", {"scope": "col"}, "Item"),
                                               el("th", {"scope": "col", "class": "num"}, "Quantity"),
                                               el("th", {"scope": "col", "class": "num"}, "Total"))),
                            el("tbody", {}, [
                                el("tr", {}, el("th", {"scope": "row"}, line.name),
                                   _number_cell(line.quantity, format_quantity(line.quantity)),
                                   _number_cell(line.total, format_money(line.total, _credit_type(line.credit_type))))
                                for line in shown
                            ])),
                         el("p", {"class": "muted"}, f"and {len(lines) - len(shown):,} more on the invoice page")
                         if len(lines) > len(shown) else None)
        rows.append(el(
            "tr", {"data-invoice-id": draft.id},
            el("th", {"scope": "row"}, format_period(invoice.starting_at, invoice.ending_before)),
            el("td", {}, invoice.type.value.capitalize()),
            el("td", {}, el("span", {"class": f"badge badge-{status.lower()}"}, status.capitalize())),
            el("td", {"class": "num total", "data-value": str(invoice.total)}, format_money(invoice.total, credit_type)),
            el("td", {}, el("a", {"href": page_url}, "View") if page_url else None,
               " · " if page_url and pdf_url else None,
               el("a", {"href": pdf_url}, "PDF") if pdf_url else None),
        ))
        if details is not None:  # the invoice's lines, folded, in a row of their own under it
            rows.append(el("tr", {"class": "lines"}, el("td", {"colspan": "5"}, details)))
    return el("table", {"class": "invoices"},
              el("caption", {}, "Invoices, newest first"),
              el("thead", {}, el("tr", {}, *(el("th", {"scope": "col", "class": c}, h) for h, c in (
                  ("Period", None), ("Type", None), ("Status", None), ("Total", "num"), ("Documents", None))))),
              el("tbody", {}, rows))


# -- credits -----------------------------------------------------------------------------------------
_KINDS = {"PREPAID": "Prepaid commit", "POSTPAID": "Postpaid commit", "CREDIT": "Credit"}


def _grant_label(view: DashboardView, grant) -> str:
    return grant.product_name if view.flag("hide_grant_name") else grant.name


def _credits(data) -> Markup:
    view = data.view
    if not data.grants:
        return el("p", {}, "No commits or credits to show." if view.dashboard == "commits_and_credits" else "No credits to show.")
    names: Mapping[str, str] = data.credit_type_names

    def money(amount: Decimal, credit_type_id: str) -> str:
        return format_money(amount, {"id": credit_type_id, "name": names.get(credit_type_id, credit_type_id)})

    balance_rows = []
    ledger_rows = []
    for grant in data.grants:
        label = _grant_label(view, grant)
        share = 0 if grant.granted <= 0 else max(0, min(100, int(grant.balance * 100 / grant.granted)))
        balance_rows.append(el(
            "tr", {"data-grant-id": grant.id},
            el("th", {"scope": "row"}, label),
            el("td", {}, _KINDS.get(grant.kind, grant.kind)),
            el("td", {}, _dates(grant.starting_at, grant.ending_before)),
            _number_cell(grant.granted, money(grant.granted, grant.credit_type_id)),
            _number_cell(grant.balance, money(grant.balance, grant.credit_type_id)),
            # <progress>, not a styled <span>: the CSP allows no style attribute, and it is read out as is.
            el("td", {}, el("progress", {"max": "100", "value": str(share), "aria-label": f"{label}: {share}% remaining"},
                            f"{share}%")),
        ))
        for entry in grant.ledger:
            amount = entry.amount
            ledger_rows.append(el(
                "tr", {"data-grant-id": grant.id},
                el("th", {"scope": "row"}, format_date(entry.timestamp), f" {entry.timestamp:%H:%M} UTC"),
                el("td", {}, label),
                el("td", {}, _entry_label(entry.type.value)),
                el("td", {"class": "num " + ("drawn" if amount < 0 else "added"), "data-value": str(amount)},
                   money(amount, grant.credit_type_id)),
            ))
    balances = el("table", {"class": "balances"},
                  el("caption", {}, "Balances"),
                  el("thead", {}, el("tr", {}, *(el("th", {"scope": "col", "class": c}, h) for h, c in (
                      ("Name", None), ("Kind", None), ("Available", None), ("Granted", "num"),
                      ("Remaining", "num"), ("Left", None))))),
                  el("tbody", {}, balance_rows))
    ledger = el("table", {"class": "ledger"},
                el("caption", {}, "Ledger"),
                el("thead", {}, el("tr", {}, *(el("th", {"scope": "col", "class": c}, h) for h, c in (
                    ("When", None), ("Name", None), ("Entry", None), ("Amount", "num"))))),
                el("tbody", {}, ledger_rows or el("tr", {}, el("td", {"colspan": "4"}, "No entries yet."))))
    return Markup(balances + ledger)


def _dates(starting_at: str | None, ending_before: str | None) -> str:
    if starting_at is None:
        return ""
    return format_period(parse_rfc3339(starting_at), parse_rfc3339(ending_before) if ending_before else None)


def _entry_label(kind: str) -> str:
    # PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION -> "Automated invoice deduction"
    for prefix in ("PREPAID_COMMIT_", "POSTPAID_COMMIT_", "CREDIT_"):
        if kind.startswith(prefix):
            kind = kind[len(prefix):]
            break
    return kind.replace("_", " ").capitalize()

