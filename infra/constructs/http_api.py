"""The public HTTP API (API Gateway v2, payload format 2.0) in front of the ingest and API functions.

The local runtime builds its router from these AWS::ApiGatewayV2::Route/Integration resources, so
the route keys below are a contract: `POST /v1/ingest`, `ANY /v1/{proxy+}`, `ANY /v2/{proxy+}`,
`GET /openapi.json` and `GET /pages/{proxy+}` (public pages: a signed token, no API key).
"""

from __future__ import annotations

import json

import jsii

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from infra.nag import acknowledge

_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationStatus": "$context.integrationStatus",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
    }
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    # IAccessLogSettings is a jsii interface, not a struct: Python must implement it as a class.
    def __init__(
        self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class HttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ingest_function: lambda_.IFunction,
        api_function: lambda_.IFunction,
        log_retention: logs.RetentionDays,
        rate_limit: int,
        burst_limit: int,
    ) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="Tally: Metronome-compatible usage billing API",
            # The default stage is added below, with throttling and access logs.
            create_default_stage=False,
        )
        self.stage = self.api.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            access_log_settings=_AccessLogSettings(
                apigwv2.LogGroupLogDestination(self.access_logs),
                apigw.AccessLogFormat.custom(_ACCESS_LOG_FORMAT),
            ),
        )

        v2 = apigwv2.PayloadFormatVersion.VERSION_2_0
        self.api.add_routes(
            path="/v1/ingest",
            methods=[apigwv2.HttpMethod.POST],
            integration=HttpLambdaIntegration("Ingest", ingest_function, payload_format_version=v2),
        )
        # One integration serves both API versions: the api function routes /v1 and /v2 itself.
        api_integration = HttpLambdaIntegration("Api", api_function, payload_format_version=v2)
        for path in ("/v1/{proxy+}", "/v2/{proxy+}"):
            self.api.add_routes(path=path, methods=[apigwv2.HttpMethod.ANY], integration=api_integration)
        # The API's OpenAPI document (tally.api.openapi), served by the api function too.
        self.api.add_routes(path="/openapi.json", methods=[apigwv2.HttpMethod.GET], integration=api_integration)
        # Public pages (hosted invoices, dashboards): GET only; the api function admits a request
        # there by the signed token in its path, never by an API key (tally.api.app).
        self.api.add_routes(path="/pages/{proxy+}", methods=[apigwv2.HttpMethod.GET], integration=api_integration)

        reason = (
            "Every route is authenticated inside the Lambda: bearer API keys are looked up by their "
            "hash in the billing table (Metronome-compatible auth), and /pages/* requests carry an "
            "HMAC-signed expiring token verified there, so no API Gateway authorizer is attached."
        )
        acknowledge(self.api, "AwsSolutions-APIG4", reason)

    @property
    def url(self) -> str:
        return self.stage.url
