"""The shape every Tally Lambda shares: runtime, tracing, its own log group and its own role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import ScaleSettings

POWERTOOLS_LAYER_ACCOUNT = "017000801446"
METRICS_NAMESPACE = "Tally"
_XRAY_WILDCARD_REASON = (
    "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions, so "
    "active tracing needs Resource '*'."
)


def powertools_layer(scope: Construct, construct_id: str, version: int) -> lambda_.ILayerVersion:
    """AWS's public Powertools v3 layer (it also carries pydantic v2), in the stack's own region."""
    region = Stack.of(scope).region
    arn = (
        f"arn:{Stack.of(scope).partition}:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}"
        f":layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:{version}"
    )
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)


@dataclass(frozen=True)
class FunctionDefaults:
    """What every function shares: the one code asset, the layers, the log retention, and the
    deployment's scale settings (memory sizes, stream batching, concurrency: infra/settings.py)."""

    code: lambda_.Code
    layers: Sequence[lambda_.ILayerVersion]
    log_retention: logs.RetentionDays
    scale: ScaleSettings = ScaleSettings.defaults()


class TallyFunction(Construct):
    """A Python 3.13 function with active tracing, an explicit-retention log group, and a role of its
    own that starts with only its log group and X-Ray. Subclasses add table access with `allow`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        defaults: FunctionDefaults,
        handler: str,
        service_name: str,
        timeout: Duration,
        memory_size: int,
        environment: Mapping[str, str],
        other_wildcard_reasons: Sequence[str] = (),
        reserved_concurrency: int | None = None,
    ) -> None:
        """`other_wildcard_reasons` justify any further Resource '*' statement the caller will add:
        cdk-nag takes one acknowledgement per finding, and this one is made here."""
        super().__init__(scope, construct_id)

        # Logs are diagnostics, not records: they age out by retention and go with the stack.
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=defaults.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        # A role per function, without AWSLambdaBasicExecutionRole: its log statement covers every
        # log group in the account, this one covers exactly the function's own.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {service_name}",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            code=defaults.code,
            handler=handler,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.X86_64,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            layers=list(defaults.layers),
            environment={
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
                **environment,
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.13 is pinned on purpose: the Powertools layer that supplies "
            "aws-lambda-powertools and pydantic is the python313 build, and both must move to a "
            "newer runtime together.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            " ".join((_XRAY_WILDCARD_REASON, *other_wildcard_reasons)),
        )

    def allow(self, actions: list[str], resources: list[str]) -> None:
        """Grant exactly `actions` on exactly `resources` (no wildcards)."""
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
