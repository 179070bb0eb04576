"""localstripe, extended with what Tally's Stripe delivery needs, run as `python -m infra.local.stripe_server`.

localstripe (PyPI) is a stateful fake of Stripe's API. Version 1.15.10 lacks, for a one-off
invoice built from invoice items (what Tally sends):
- `POST /v1/invoices` for a customer without a subscription answers 404 ("No upcoming invoices"),
  and takes none of `auto_advance`, `collection_method`, `days_until_due`, `currency`,
  `pending_invoice_items_behavior=exclude` as a draft-only create;
- `POST /v1/invoiceitems` with `invoice` does not add the item to that draft's lines, and takes
  the period as `period_start`/`period_end`, not Stripe's `period[start]`/`period[end]`;
- `POST /v1/invoices/{id}/finalize` does not exist;
- voiding an invoice without a PaymentIntent is a 400;
- `Idempotency-Key` is ignored: a repeated POST creates a second object, and two at once are both
  carried out (Stripe answers the second 409 idempotency_key_in_use while the first runs);
- `POST /v1/payment_intents/{id}/confirm` refuses `off_session` (a 400 "Unexpected"), which an
  off-session charge of a saved payment method sends (the threshold billing STRIPE payment gate).
  Its PaymentIntents, payment methods (`pm_card_visa`; `pm_card_chargeCustomerFail`, which attaches
  and is then declined: 402 card_declined), invoice `/pay` and customers'
  `invoice_settings.default_payment_method` serve as they are.
This module adds each of them, shaped as Stripe's API reference documents them, and a test hook:
`POST /_config/tally/failures` with `count`, `status` and `when` ("before": the request is refused;
"after": it is carried out and its answer lost, as a timeout after Stripe committed would). The
store is kept in memory only (localstripe pickles it to one file in /tmp that every instance on
the machine would share).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import threading
import time

from aiohttp import web

from localstripe import resources as ls
from localstripe import server as ls_server
from localstripe.errors import UserError

_failures: dict = {"count": 0, "status": 500, "when": "before"}
_idempotent: dict[str, tuple[str, int, bytes]] = {}  # key -> (request fingerprint, status, body)
_in_flight: set[str] = set()  # keys whose first request is being carried out
_lock = threading.Lock()


# -- invoices: a one-off draft, its items, finalize, void ----------------------------------------------
_original_invoice_create = ls.Invoice._api_create.__func__


def _invoice_create(cls, customer=None, subscription=None, auto_advance=None, collection_method=None,
                    days_until_due=None, currency=None, pending_invoice_items_behavior=None, description=None,
                    metadata=None, **rest):
    if subscription is not None or pending_invoice_items_behavior != "exclude":
        return _original_invoice_create(cls, customer=customer, subscription=subscription, description=description,
                                        metadata=metadata, pending_invoice_items_behavior=pending_invoice_items_behavior,
                                        **rest)
    if rest:
        raise UserError(400, "Unexpected " + ", ".join(rest))
    if collection_method not in (None, "charge_automatically", "send_invoice"):
        raise UserError(400, "Invalid collection_method")
    # simulation=True: the draft takes no pending item (Stripe's "exclude"), and sends no webhook.
    invoice = cls(customer=customer, description=description, metadata=metadata, simulation=True)
    invoice.lines._list = []
    invoice.currency = currency or "usd"
    invoice.collection_method = collection_method or "charge_automatically"
    invoice.auto_advance = auto_advance in (True, "true")
    invoice.days_until_due = None if days_until_due is None else int(days_until_due)
    return invoice


_original_item_init = ls.InvoiceItem.__init__


def _item_init(self, period=None, **data):
    if period is not None:
        if not isinstance(period, dict) or "start" not in period or "end" not in period:
            raise UserError(400, "period needs start and end")
        data["period_start"], data["period_end"] = period["start"], period["end"]
    invoice_id = data.get("invoice")
    if invoice_id is not None:
        invoice = ls.Invoice._api_retrieve(invoice_id)
        if invoice.status != "draft":
            raise UserError(400, "Invoice items can only be added to draft invoices")
    _original_item_init(self, **data)
    if invoice_id is not None:
        invoice.lines._list.append(ls.InvoiceLineItem(self))


def _finalize_invoice(id, auto_advance=None, **rest):
    invoice = ls.Invoice._api_retrieve(id)
    if invoice.status != "draft":
        raise UserError(400, "This invoice is already finalized")
    invoice._finalize()
    return invoice


_original_void = ls.Invoice._api_void_invoice.__func__


def _void_invoice(cls, id):
    invoice = ls.Invoice._api_retrieve(id)
    if invoice.payment_intent is not None:
        return _original_void(cls, id)
    if invoice.status not in ("draft", "open"):
        raise UserError(400, "Only a draft or open invoice can be voided")
    invoice._draft = False
    invoice._voided = True
    invoice.status_transitions["voided_at"] = int(time.time())
    return invoice


def _confirm_payment_intent(id, off_session=None, **rest):
    if off_session not in (None, True, False, "true", "false"):
        raise UserError(400, "Invalid off_session")
    return ls.PaymentIntent._api_confirm(id, **rest)


def _install_resources() -> None:
    ls.Invoice._api_create = classmethod(_invoice_create)
    ls.Invoice._api_void_invoice = classmethod(_void_invoice)
    ls.InvoiceItem.__init__ = _item_init
    ls.store.dump_to_disk = lambda: None
    ls.store.try_load_from_disk = lambda: None


# -- middlewares: injected failures, then idempotency keys ---------------------------------------------
def _stripe_error(status: int, message: str, kind: str = "api_error") -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


@web.middleware
async def injected_failures(request, handler):
    if request.path.startswith("/_config/"):
        return await handler(request)
    with _lock:
        fail = _failures["count"] > 0
        if fail:
            _failures["count"] -= 1
        status, when = _failures["status"], _failures["when"]
    if fail and when == "before":
        return _stripe_error(status, "injected failure (before)")
    response = await handler(request)
    if fail:
        return _stripe_error(status, "injected failure (after the request was carried out)")
    return response


@web.middleware
async def idempotency_keys(request, handler):
    """As Stripe: a POST repeating a key gets the first answer again; with other parameters, a 400."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    fingerprint = f"{request.path}?{await request.text()}"
    with _lock:
        seen = _idempotent.get(key)
        busy = seen is None and key in _in_flight
        if seen is None and not busy:
            _in_flight.add(key)
    if busy:
        return _stripe_error(409, "There is currently another in-progress request using this Idempotent Key",
                             "idempotency_error")
    if seen is not None:
        if seen[0] != fingerprint:
            return _stripe_error(400, "Keys for idempotent requests can only be used with the same parameters",
                                 "idempotency_error")
        return web.Response(status=seen[1], body=seen[2], content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    try:
        response = await handler(request)
        if response.status < 500:  # Stripe does not save a 500: a retry runs the request again
            with _lock:
                _idempotent.setdefault(key, (fingerprint, response.status, response.body))
    finally:
        with _lock:
            _in_flight.discard(key)
    return response


async def _config_failures(request):
    data = await request.json()
    with _lock:
        _failures.update(count=int(data.get("count", 1)), status=int(data.get("status", 500)),
                         when=data.get("when", "before"))
    return web.json_response(dict(_failures))


def build_app() -> web.Application:
    _install_resources()
    app = web.Application(middlewares=[ls_server.error_middleware, injected_failures, idempotency_keys,
                                       ls_server.auth_middleware])
    app.on_response_prepare.append(ls_server.add_cors_headers)
    app.router.add_post("/_config/tally/failures", _config_failures)
    app.router.add_post("/v1/payment_intents/{id}/confirm",
                        ls_server.api_extra(_confirm_payment_intent, "/v1/payment_intents/{id}/confirm"))
    app.router.add_post("/v1/invoices/{id}/finalize", ls_server.api_extra(_finalize_invoice, "/v1/invoices/{id}/finalize"))
    # localstripe's list of extra routes holds its own void: ours goes first.
    app.router.add_post("/v1/invoices/{id}/void", ls_server.api_extra(ls.Invoice._api_void_invoice, "/v1/invoices/{id}/void"))
    for route in ls_server.app.router.routes():  # localstripe's own routes, after ours
        if route.resource is not None and route.method != "HEAD":
            app.router.add_route(route.method, route.resource.canonical, route.handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="localstripe with the routes Tally's Stripe delivery needs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    print(json.dumps({"listening": f"http://{args.host}:{args.port}"}), flush=True)
    web.run_app(build_app(), sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
