"""A small stand-in for API Gateway HTTP APIs: routes from the template's AWS::ApiGatewayV2::Route
resources, payload format 2.0 events, and the handler's response mapped back to HTTP.
(moto's API Gateway never calls Lambda.)"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from infra.local.lambdas import FunctionError, LocalLambdas

_TEXT_TYPES = ("application/json", "text/")
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
        "isBase64Encoded": not text,
    }
    if query_params:
        event["queryStringParameters"] = query_params
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = body.decode("utf-8") if text else base64.b64encode(body).decode("ascii")
    return event


class LocalHttpApi:
    def __init__(self, lambdas: LocalLambdas, routes: list[Route], host: str, port: int,
                 local_routes: dict[tuple[str, str], LocalRoute] | None = None) -> None:
        self.routes = routes
        self.local_routes = local_routes or {}  # (method, path) -> LocalRoute
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # otherwise delayed ACKs add ~40 ms to each response

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
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
                self.send_response(status)
                headers.setdefault("content-type", "application/json")
                for key, value in headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]


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
