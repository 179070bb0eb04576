"""The api and ingest functions behind an in-process stand-in for API Gateway, on moto tables.

Requests become the payload-2.0 events the local gateway builds (infra.local.http_gateway), routed
by the route keys infra/constructs/http_api.py declares; answers over Lambda's response limit become
the 502 API Gateway would give. `gateway` is a WSGI app, so schemathesis and httpx can call it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from infra.local.http_gateway import Route, build_event, choose
from tests.service.conftest import _table

# The route keys of infra/constructs/http_api.py (tests/infra/test_http_api.py holds them there).
ROUTES = [
    Route("POST", "/v1/ingest", "ingest"),
    Route("ANY", "/v1/{proxy+}", "api"),
    Route("ANY", "/v2/{proxy+}", "api"),
    Route("GET", "/openapi.json", "api"),
    Route("GET", "/pages/{proxy+}", "api"),
]
# Lambda's limit on a synchronous invocation's response: an answer over it never reaches the client.
LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024
_BAD_GATEWAY = (502, {"content-type": "application/json"}, b'{"message": "Internal Server Error", "type": "internal_error"}')


@contextmanager
def deployed_api(api_key: str) -> Iterator[None]:
    """The functions' environment on fresh moto tables, with `api_key` valid; wiring forgotten after."""
    from tally import wiring

    with mock_aws(), pytest.MonkeyPatch.context() as env:
        client = boto3.client("dynamodb", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        env.setenv("EVENTS_TABLE", _table(client, "events", stream="NEW_IMAGE"))
        env.setenv("COUNTERS_TABLE", _table(client, "counters", stream="NEW_AND_OLD_IMAGES"))
        env.setenv("BILLING_TABLE", _table(client, "billing", gsi=True))
        env.setenv("INVOICES_TOPIC_ARN", sns.create_topic(Name="api-invoices")["TopicArn"])
        env.setenv("ALERTS_TOPIC_ARN", sns.create_topic(Name="api-alerts")["TopicArn"])
        secrets = boto3.client("secretsmanager", region_name="us-east-1")  # the stack's generated page key
        env.setenv("PAGE_SIGNING_SECRET_ARN", secrets.create_secret(Name="page-signing", SecretString="p" * 64)["ARN"])
        sqs = boto3.client("sqs", region_name="us-east-1")  # metric create starts its backfill job there
        env.setenv("BACKFILL_QUEUE_URL", sqs.create_queue(QueueName="api-backfill")["QueueUrl"])
        env.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        env.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")  # refusals are expected here; keep output readable
        wiring.reset()
        wiring.api_keys().create("api-tests", api_key)
        try:
            yield
        finally:
            wiring.reset()


def _context(function: str) -> SimpleNamespace:
    return SimpleNamespace(
        function_name=function,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
        memory_limit_in_mb=1024,
        aws_request_id="api-tests",
        log_group_name=f"/aws/lambda/{function}",
        log_stream_name="api-tests",
    )


def invoke(function: str, event: dict) -> dict:
    from functions.api.handler import handler as api
    from functions.ingest.handler import handler as ingest

    return (ingest if function == "ingest" else api)(event, _context(function))


def send(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request through the gateway: (status, headers, body)."""
    path, _, query = target.partition("?")
    headers = {key.lower(): value for key, value in headers.items()}
    chosen = choose(ROUTES, method, path)
    if chosen is None:  # API Gateway's own answer; no function runs
        return 404, {"content-type": "application/json"}, b'{"message": "Not Found", "type": "not_found"}'
    route, params = chosen
    answer = invoke(route.function, build_event(route, params, method, path, query, headers, body))
    if len(json.dumps(answer)) > LAMBDA_RESPONSE_BYTES:  # Lambda fails the invocation
        return _BAD_GATEWAY
    data = answer.get("body") or ""
    data = base64.b64decode(data) if answer.get("isBase64Encoded") else data.encode()
    return answer["statusCode"], dict(answer.get("headers") or {}), data


def request(method: str, target: str, api_key: str, document: Any = None) -> tuple[int, Any]:
    """A JSON request with a bearer key: (status, parsed body)."""
    body = b"" if document is None else json.dumps(document).encode()
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    status, _, data = send(method, target, headers, body)
    return status, json.loads(data) if data else None


def gateway(environ: dict, start_response):
    """`send` as a WSGI app."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))
    if "?" not in raw and environ.get("QUERY_STRING"):
        raw = f"{raw}?{environ['QUERY_STRING']}"
    headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-")] = environ[key]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    status, answer_headers, data = send(environ["REQUEST_METHOD"], raw, headers, body)
    start_response(f"{status} {'OK' if status < 400 else 'Error'}", list(answer_headers.items()))
    return [data]
