"""A small stand-in for API Gateway HTTP APIs: routes from the template's AWS::ApiGatewayV2::Route
resources, payload format 2.0 events, and the handler's response mapped back to HTTP.
(moto's API Gateway never calls Lambda.)"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from infra.local.lambdas import FunctionError, LocalLambdas
from tally.billing.limits import API_GATEWAY_PAYLOAD_BYTES

logger = logging.getLogger(__name__)
# One INFO line per request answered, as API Gateway's access log would have it.
access_log = logging.getLogger("infra.local.access")

_TEXT_TYPES = ("application/json", "text/")
# The methods an ANY route takes on API Gateway; others never reach a route.
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Format 2.0 joins repeated headers with commas; for these a joined value would be a key or type
# the client never sent, so a repeat is refused instead (content-length: see body_length).
_SINGLE_HEADERS = ("authorization", "content-type", "host")
# A route that exists only on the local runtime (no API Gateway route, no Lambda): it gets the
# lowercased headers and the body, and returns the status and a JSON body.
LocalRoute = Callable[[dict, bytes], tuple[int, dict]]


@dataclass(frozen=True)
class Route:
    method: str  # "POST" or "ANY"
    path: str  # "/v1/ingest" or "/v1/{proxy+}"
    function: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict | None:
        if self.method not in ("ANY", method):
            return None
        if self.path.endswith("/{proxy+}"):
            prefix = self.path[: -len("{proxy+}")]
            return {"proxy": path[len(prefix):]} if path.startswith(prefix) and len(path) > len(prefix) else None
        return {} if path == self.path else None


def choose(routes: list[Route], method: str, path: str) -> tuple[Route, dict] | None:
    # API Gateway prefers the most specific route: exact paths and methods before greedy ANY.
    ranked = sorted(routes, key=lambda r: ("{proxy+}" in r.path, r.method == "ANY", -len(r.path)))
    for route in ranked:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None


class GatewayRefusal(Exception):
    """A request the gateway answers itself, before any Lambda: `field` broke `rule`."""

    def __init__(self, status: int, field: str, rule: str, kind: str = "invalid_request") -> None:
        super().__init__(f"{field}: {rule}")
        self.status, self.field, self.rule, self.kind = status, field, rule, kind

    def body(self) -> bytes:
        # The API's error shape (tally.api.errors), so clients parse one kind of error.
        return json.dumps({"message": f"{self.field}: {self.rule}", "type": self.kind, "field": self.field}).encode()


def joined_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Lowercased headers as format 2.0 carries them: repeats joined with commas."""
    headers: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower()
        if key in headers and key in _SINGLE_HEADERS:
            raise GatewayRefusal(400, key, "must be sent once, not repeated")
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def body_length(message: Message) -> int:
    """The body's length from the request's headers, or the refusal when framing is unclear."""
    if "transfer-encoding" in message:
        raise GatewayRefusal(411, "transfer-encoding", "is not supported by the local gateway; send content-length",
                             "length_required")
    values = message.get_all("content-length") or ["0"]
    if len(values) > 1:
        raise GatewayRefusal(400, "content-length", "must be sent once, not repeated")
    text = values[0].strip()
    if not (text.isascii() and text.isdigit()):  # int() would take "+5", " 5", "1_0" and "²"
        raise GatewayRefusal(400, "content-length", "must be a whole number of bytes")
    length = int(text)
    if length > API_GATEWAY_PAYLOAD_BYTES:
        raise GatewayRefusal(413, "content-length", f"must be at most {API_GATEWAY_PAYLOAD_BYTES:,} bytes "
                             "(API Gateway's payload limit)", "payload_too_large")
    return length


def build_event(route: Route, params: dict, method: str, raw_path: str, query: str, headers: dict, body: bytes) -> dict:
    text = not body or any((headers.get("content-type") or "").startswith(t) for t in _TEXT_TYPES)
    if headers.get("content-encoding"):
        text = False
    query_params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        query_params[key] = f"{query_params[key]},{value}" if key in query_params else value
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
    }
    if query_params:
        event["queryStringParameters"] = query_params
    if params:
        event["pathParameters"] = params
    if body and text:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:  # not text whatever its type says (a gzip body, say): the Lambda decides
            text = False
    if body and not text:
        event["body"] = base64.b64encode(body).decode("ascii")
    event["isBase64Encoded"] = not text
    return event


def loggable_path(raw: str) -> str:
    """A request's path as the local logs show it: no query, and a signed page's token (a bearer
    credential for that page) replaced by `<token>`. API Gateway's access log on AWS holds the
    route key (`GET /pages/{proxy+}`), never the path, so no token reaches a log there either."""
    path = urlsplit(raw or "").path
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "pages":
        return "/".join(parts[:3] + ["<token>"])
    return path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops SYNs under a burst, a 1 s stall per retry

    def handle_error(self, request, client_address) -> None:
        # A client that resets or leaves mid-request is routine; one line, not socketserver's traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.warning("%s:%s went away: %s", *client_address[:2], type(exc).__name__)
        else:
            logger.error("request from %s:%s failed", *client_address[:2], exc_info=True)


class LocalHttpApi:
    def __init__(self, lambdas: LocalLambdas, routes: list[Route], host: str, port: int,
                 local_routes: dict[tuple[str, str], LocalRoute] | None = None, idle_timeout: float = 60.0) -> None:
        self.routes = routes
        self._in_flight = 0
        self._idle = threading.Condition()
        self._closing = False
        self.local_routes = local_routes or {}  # (method, path) -> LocalRoute
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # otherwise delayed ACKs add ~40 ms to each response
            timeout = idle_timeout  # a half-open connection would otherwise hold its thread forever

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
                pass

            def log_error(self, format: str, *args) -> None:  # noqa: A002
                # Only a read timing out calls this (send_error is ours); an idle keep-alive
                # connection timing out between requests is not news.
                if self.raw_requestline:
                    logger.warning("%s:%s %s", *self.client_address[:2], format % args)

            def handle_one_request(self) -> None:
                self.raw_requestline = b""
                self._received = time.monotonic()
                super().handle_one_request()

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # http.server's own refusals (request line, header block, method) in the API's JSON
                # shape: a 501 for a method becomes API Gateway's 405, never a 5xx nor an HTML page.
                if code == 501:
                    refusal = GatewayRefusal(405, "method", f"must be one of {', '.join(ALLOWED_METHODS)}",
                                             "method_not_allowed")
                elif code == 431:
                    refusal = GatewayRefusal(431, "headers", f"{message}: {explain}", "invalid_request")
                elif code == 414:
                    refusal = GatewayRefusal(414, "request line", "must be at most 65,536 bytes")
                else:
                    refusal = GatewayRefusal(code if 400 <= code < 500 else 400, "request line", message or "is malformed")
                self.close_connection = True
                # An unparsed request line leaves HTTP/0.9, which would send the body without a status line.
                self.request_version = self.protocol_version
                self._refuse(refusal)

            def _refuse(self, refusal: GatewayRefusal) -> None:
                headers = {"content-type": "application/json"}
                if refusal.status == 405:
                    headers["allow"] = ", ".join(ALLOWED_METHODS)
                self._reply(refusal.status, headers, refusal.body())

            def _serve(self) -> None:
                with api._idle:
                    closing = api._closing
                    api._in_flight += not closing
                if closing:  # a keep-alive connection outlives shutdown(); its requests must not
                    self.close_connection = True
                    return self._reply(503, {"content-type": "application/json"},
                                       b'{"message":"the local stack is stopping"}')
                try:
                    self._answer()
                finally:
                    with api._idle:
                        api._in_flight -= 1
                        api._idle.notify_all()

            def _answer(self) -> None:
                try:
                    self._forward()
                except (ConnectionError, TimeoutError):
                    raise  # the client is gone: _Server.handle_error logs one line
                except Exception:  # noqa: BLE001 - a bug here must still answer, as API Gateway would
                    logger.exception("local gateway failed on %s %s", self.command, loggable_path(self.path))
                    self.close_connection = True
                    self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')

            def _forward(self) -> None:
                url = urlsplit(self.path)
                try:
                    length = body_length(self.headers)
                except GatewayRefusal as refusal:
                    self.close_connection = True  # where the body ends is unknown, so nothing more can be read
                    return self._refuse(refusal)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    self.close_connection = True
                    return self._refuse(GatewayRefusal(400, "content-length", f"is {length:,} but the body "
                                                       f"ended after {len(body):,} bytes"))
                try:  # after the body is read, so the connection stays usable
                    headers = joined_headers(list(self.headers.items()))
                except GatewayRefusal as refusal:
                    return self._refuse(refusal)
                local = api.local_routes.get((self.command, url.path))
                if local is not None:
                    try:
                        status, payload = local(headers, body)
                    except Exception as exc:  # noqa: BLE001 - a 500 with the reason, for the developer
                        status, payload = 500, {"message": repr(exc), "type": "internal_error"}
                    return self._reply(status, {"content-type": "application/json"}, json.dumps(payload).encode())
                chosen = choose(api.routes, self.command, url.path)
                if chosen is None:
                    return self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                route, params = chosen
                event = build_event(route, params, self.command, url.path, url.query, headers, body)
                try:
                    result = lambdas.invoke(route.function, event)
                except FunctionError:
                    return self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
                status = int(result.get("statusCode", 200))
                out_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
                payload = result.get("body") or ""
                data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
                self._reply(status, out_headers, data)

            def _reply(self, status: int, headers: dict, data: bytes) -> None:
                if access_log.isEnabledFor(logging.INFO):
                    access_log.info('%s "%s %s" %d %d %.0f ms', self.client_address[0], self.command,
                                    loggable_path(getattr(self, "path", "")), status, len(data),
                                    (time.monotonic() - self._received) * 1000)
                self.send_response(status)
                headers.setdefault("content-type", "application/json")
                for key, value in headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                if self.close_connection:
                    self.send_header("connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        self.server = _Server((host, port), Handler)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting requests and wait (up to `timeout`) for those in flight: once this returns,
        every request that was answered is in the stores, and no other will be."""
        with self._idle:
            self._closing = True
        self.server.shutdown()
        self.server.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)


def routes_from_template(template: dict, function_names: dict[str, str]) -> list[Route]:
    """Read routes and their Lambda integrations out of the synthesized template."""
    resources = template["Resources"]
    routes = []
    for resource in resources.values():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        props = resource["Properties"]
        method, path = props["RouteKey"].split(" ", 1)
        target = props["Target"]
        integration_id = _ref_in(target)
        integration = resources[integration_id]["Properties"]
        function_id = _ref_in(integration["IntegrationUri"])
        routes.append(Route(method, path, function_names[function_id]))
    return routes


def _ref_in(value) -> str:
    """The logical id referenced inside Ref / Fn::GetAtt / Fn::Join structures."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
        for inner in value.values():
            found = _ref_in(inner)
            if found:
                return found
    if isinstance(value, list):
        for inner in value:
            found = _ref_in(inner)
            if found:
                return found
    return ""
