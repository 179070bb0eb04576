"""The HTTP API: the five routes the local runtime also routes by, and the default stage."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import referenced_ids

ROUTES = {
    "POST /v1/ingest goes to the ingest function": (
        "POST /v1/ingest",
        "functions.ingest.handler.handler",
    ),
    "ANY /v1/{proxy+} goes to the api function": (
        "ANY /v1/{proxy+}",
        "functions.api.handler.handler",
    ),
    "ANY /v2/{proxy+} goes to the api function": (
        "ANY /v2/{proxy+}",
        "functions.api.handler.handler",
    ),
    "GET /openapi.json goes to the api function": (
        "GET /openapi.json",
        "functions.api.handler.handler",
    ),
    "GET /pages/{proxy+} (public pages) goes to the api function": (
        "GET /pages/{proxy+}",
        "functions.api.handler.handler",
    ),
}


def test_exactly_the_five_routes(synth):
    routes = synth.of_type("AWS::ApiGatewayV2::Route").values()
    keys = sorted(r["Properties"]["RouteKey"] for r in routes)
    assert keys == ["ANY /v1/{proxy+}", "ANY /v2/{proxy+}", "GET /openapi.json", "GET /pages/{proxy+}", "POST /v1/ingest"]


def test_both_api_versions_and_the_document_share_one_integration(synth):
    targets = [
        r["Properties"]["Target"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["RouteKey"] != "POST /v1/ingest"
    ]
    assert len(targets) == 4 and len({json.dumps(t) for t in targets}) == 1


@pytest.mark.parametrize(("route_key", "handler"), ROUTES.values(), ids=ROUTES.keys())
def test_route_integrates_its_function_with_payload_v2(synth, route_key, handler):
    (route,) = [
        r for r in synth.of_type("AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["RouteKey"] == route_key
    ]
    (integration_id,) = referenced_ids(route["Properties"]["Target"])
    integration = synth.resources[integration_id]["Properties"]
    function_id, _ = synth.function(handler)

    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": [function_id, "Arn"]}
    # API Gateway may invoke the function.
    assert any(
        p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
        and p["Properties"]["Principal"] == "apigateway.amazonaws.com"
        for p in synth.of_type("AWS::Lambda::Permission").values()
    )


def test_default_stage_deploys_itself_throttles_and_logs_access(synth):
    (stage,) = synth.of_type("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default"
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 4000, "ThrottlingRateLimit": 2000}
    (log_group_id,) = referenced_ids(props["AccessLogSettings"]["DestinationArn"])
    log_group = synth.resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in log_group["Properties"]
    assert "$context.requestId" in props["AccessLogSettings"]["Format"]
