"""The local HTTP gateway under hostile clients, over raw sockets: every malformed request gets a
4xx JSON error naming the field and the rule (never a 5xx, an HTML page or a dropped connection),
and a client that leaves costs one log line, never a traceback.

Most cases need only the gateway, so they run it in front of a recording stand-in for the Lambdas;
the cases whose answer comes from a real handler use the whole local stack."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import logging
import socket
import struct
import threading
import time

import pytest

from infra.local.http_gateway import LocalHttpApi, Route
from tests.system.conftest import API_KEY

pytestmark = pytest.mark.system

GATEWAY_LOG = "infra.local.http_gateway"


class RecordingLambdas:
    """Answers every invocation with 200 and keeps the events; `gate`, when set, holds each answer."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.gate: threading.Event | None = None

    def invoke(self, name: str, event: dict) -> dict:
        self.events.append(event)
        if self.gate is not None:
            self.gate.wait(5)
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({"function": name})}


def _serve(api: LocalHttpApi):
    thread = threading.Thread(target=api.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return api


def _stop(api: LocalHttpApi) -> None:
    api.server.shutdown()
    api.server.server_close()


ROUTES = [Route("POST", "/v1/ingest", "ingest"), Route("ANY", "/v1/{proxy+}", "api")]


@pytest.fixture()
def lambdas() -> RecordingLambdas:
    return RecordingLambdas()


@pytest.fixture()
def gateway(lambdas):
    api = _serve(LocalHttpApi(lambdas, ROUTES, "127.0.0.1", 0))
    yield api
    _stop(api)


@pytest.fixture()
def gateway_log(caplog):
    caplog.set_level(logging.INFO, logger=GATEWAY_LOG)
    return lambda: [r for r in caplog.records if r.name == GATEWAY_LOG]


def exchange(port: int, raw: bytes, *, method: str = "POST", end_body: bool = False) -> tuple[int, dict, bytes]:
    """Send `raw` bytes as they are and read one response; `end_body` half-closes after sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        if end_body:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def request(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def refusal(status: int, headers: dict, data: bytes, expected: int, field: str) -> dict:
    assert status == expected, data
    assert headers["content-type"] == "application/json"
    body = json.loads(data)
    assert body["field"] == field and body["message"].startswith(f"{field}: "), body
    return body


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a crashed client or a dropped network path does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


# -- framing: Content-Length and Transfer-Encoding --------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [
        pytest.param([("Content-Length", "abc")], b"", 400, "content-length", id="content-length is not a number"),
        pytest.param([("Content-Length", "-5")], b"", 400, "content-length", id="content-length is negative"),
        pytest.param([("Content-Length", "1e3")], b"", 400, "content-length", id="content-length is in exponent form"),
        pytest.param([("Content-Length", "2"), ("Content-Length", "5")], b"[]", 400, "content-length",
                     id="content-length is sent twice"),
        pytest.param([("Content-Length", str(20 * 1024 * 1024))], b"", 413, "content-length",
                     id="content-length is over API Gateway's 10 MB payload limit"),
        pytest.param([("Content-Length", "100")], b"[]", 400, "content-length",
                     id="the body ends before content-length"),
        pytest.param([("Transfer-Encoding", "chunked")], b"2\r\n[]\r\n0\r\n\r\n", 411, "transfer-encoding",
                     id="a chunked body, which the local gateway does not take"),
    ],
)
def test_unclear_framing_is_refused_before_any_lambda(gateway, lambdas, headers, body, status, field):
    answer = exchange(gateway.port, request("POST", "/v1/ingest", headers, body), end_body=True)

    refusal(*answer, status, field)
    assert answer[1]["connection"] == "close"
    assert lambdas.events == []


def test_a_repeated_authorization_header_is_refused_by_name(gateway, lambdas):
    headers = [("Authorization", "Bearer first"), ("Authorization", "Bearer second"), ("Content-Length", "2")]

    body = refusal(*exchange(gateway.port, request("POST", "/v1/ingest", headers, b"[]")), 400, "authorization")

    assert "once" in body["message"]
    assert lambdas.events == []


def test_a_repeated_content_type_header_is_refused_by_name(gateway, lambdas):
    headers = [("Content-Type", "application/json"), ("Content-Type", "text/plain"), ("Content-Length", "2")]

    refusal(*exchange(gateway.port, request("POST", "/v1/ingest", headers, b"[]")), 400, "content-type")
    assert lambdas.events == []


def test_other_repeated_headers_reach_the_lambda_joined_with_commas_as_in_format_2(gateway, lambdas):
    status, _, _ = exchange(gateway.port, request("GET", "/v1/customers", [("X-Tag", "a"), ("X-Tag", "b")]), method="GET")

    assert status == 200
    assert lambdas.events[0]["headers"]["x-tag"] == "a,b"


# -- bodies that are not UTF-8 text ---------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"name": "\xff\xfe"}', id="invalid UTF-8 in a JSON body"),
        pytest.param(gzip.compress(b'{"name": "x"}'), id="a gzip body without content-encoding"),
    ],
)
def test_a_body_that_is_not_utf8_reaches_the_lambda_as_base64_bytes(gateway, lambdas, body):
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    status, _, _ = exchange(gateway.port, request("POST", "/v1/customers", headers, body))

    assert status == 200
    (event,) = lambdas.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


# -- methods and request lines --------------------------------------------------------------------
@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_a_method_api_gateway_has_no_route_for_is_a_json_405_with_allow(gateway, lambdas, method):
    status, headers, data = exchange(gateway.port, request(method, "/v1/customers", []), method=method)

    body = refusal(status, headers, data, 405, "method")
    assert body["type"] == "method_not_allowed"
    assert headers["allow"] == "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert lambdas.events == []


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD"])
def test_options_and_head_reach_the_any_route_as_on_api_gateway_without_cors(gateway, lambdas, method):
    status, _, data = exchange(gateway.port, request(method, "/v1/customers", []), method=method)

    assert status == 200
    assert data == (b"" if method == "HEAD" else b'{"function": "api"}')
    assert lambdas.events[0]["requestContext"]["http"]["method"] == method


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"GARBAGE", id="one word"),
        pytest.param(b"GET /v1/customers HTTP/2.0", id="HTTP/2 over a plain socket"),
        pytest.param(b"GET /v1/customers SPDY/3", id="not HTTP"),
    ],
)
def test_a_malformed_request_line_is_a_json_400(gateway, line):
    status, headers, data = exchange(gateway.port, line + b"\r\n\r\n")

    refusal(status, headers, data, 400, "request line")


def test_an_oversized_header_block_is_a_json_431(gateway):
    raw = request("GET", "/v1/customers", [(f"X-{i}", "v") for i in range(150)])

    status, headers, data = exchange(gateway.port, raw, method="GET")

    refusal(status, headers, data, 431, "headers")


# -- clients that leave ---------------------------------------------------------------------------
def _one_line_each(records: list[logging.LogRecord], connections: int) -> None:
    assert 1 <= len(records) <= connections
    for record in records:
        assert record.exc_info is None and "\n" not in record.getMessage()


def test_fifty_connections_reset_mid_request_log_one_line_each_and_no_traceback(gateway, gateway_log, capsys):
    socks = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        sock.sendall(request("POST", "/v1/ingest", [("Content-Length", "100")], b'[{"half": '))
        socks.append(sock)
    time.sleep(0.2)  # let each thread block on the rest of its body
    for sock in socks:
        reset(sock)

    wait_for(lambda: len(gateway_log()) >= 50)

    assert "Traceback" not in capsys.readouterr().err
    _one_line_each(gateway_log(), 50)


def test_clients_that_leave_before_the_answer_log_one_line_each_and_no_traceback(gateway, lambdas, gateway_log, capsys):
    lambdas.gate = threading.Event()
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        sock.sendall(request("POST", "/v1/ingest", [("Content-Length", "2")], b"[]"))
        wait_for(lambda n=len(lambdas.events): len(lambdas.events) > n)
        reset(sock)
    lambdas.gate.set()

    wait_for(lambda: len(gateway_log()) >= 5)

    assert "Traceback" not in capsys.readouterr().err
    _one_line_each(gateway_log(), 5)


def test_a_half_open_connection_times_out_with_one_line_and_frees_its_thread(lambdas, gateway_log, capsys):
    api = _serve(LocalHttpApi(lambdas, ROUTES, "127.0.0.1", 0, idle_timeout=0.3))
    try:
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nContent-Le")

            wait_for(lambda: len(gateway_log()) >= 1)

            assert sock.recv(1) == b""  # the gateway closed its end
        assert "Traceback" not in capsys.readouterr().err
        _one_line_each(gateway_log(), 1)
    finally:
        _stop(api)


def test_an_idle_keep_alive_connection_times_out_silently(lambdas, gateway_log):
    api = _serve(LocalHttpApi(lambdas, ROUTES, "127.0.0.1", 0, idle_timeout=0.3))
    try:
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(request("GET", "/v1/customers", []))
            response = http.client.HTTPResponse(sock, method="GET")
            response.begin()
            response.read()

            assert sock.recv(1) == b""  # closed after the idle timeout
        assert gateway_log() == []
    finally:
        _stop(api)


# -- the real handlers behind the gateway ----------------------------------------------------------
def _real(local_stack, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
    connection = http.client.HTTPConnection(local_stack.host, local_stack.http.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": content_type}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/customers", b'{"name": "\xff\xfe"}', id="invalid UTF-8 in a customer body"),
        pytest.param("/v1/ingest", b'[{"transaction_id": "\xc3\x28"}]', id="invalid UTF-8 in an ingest batch"),
        pytest.param("/v1/ingest", gzip.compress(b"<usage/>"), id="a gzip body without content-encoding, not JSON inside"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_a_400_from_the_handler(local_stack, path, body):
    body = refusal(*_real(local_stack, "POST", path, body), 400, "body")

    assert body["type"] == "invalid_request"


def test_options_on_the_real_api_is_a_json_404_from_the_handler(local_stack):
    status, headers, data = _real(local_stack, "OPTIONS", "/v1/customers")

    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(data)["type"] == "not_found"


def test_a_signed_pages_token_never_reaches_the_local_access_log(local_stack, caplog):
    # A page token is a bearer credential for its page: the log line names the page's kind only,
    # as API Gateway's access log (route keys) does on AWS.
    token = "v1.forged-token-standing-in-for-a-real-one.c2lnbmF0dXJl"
    caplog.set_level(logging.INFO, logger="infra.local.access")
    for path in (f"/pages/invoices/{token}", f"/pages/dashboards/{token}?x=1"):
        status, headers, _ = _real(local_stack, "GET", path)
        assert status == 403 and headers["content-type"].startswith("text/html")
    lines = [r.getMessage() for r in caplog.records if r.name == "infra.local.access"]
    assert any('"GET /pages/invoices/<token>" 403' in line for line in lines), lines
    assert any('"GET /pages/dashboards/<token>" 403' in line for line in lines), lines
    assert not any(token in r.getMessage() for r in caplog.records)
