"""Deploys the synthesized CDK template into moto and runs the system in this process.

What runs is what deploys to AWS: the template's tables, functions, environment, event source
mapping settings and HTTP routes. Only the parts moto cannot run are replaced: API Gateway v2
(by LocalHttpApi), the event source mapping (by StreamPump) and the Lambda runtime (in-process).
With a state folder, the data survives restarts (infra/local/state.py explains how).
"""

from __future__ import annotations

import atexit
import decimal
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

# Every AWS client in this process talks to moto; set before boto3 is used.
LOCAL_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
# Function settings the local stack sets apart from the template. A backfill waits, before reading
# the events table, longer than any ingest takes between stamping and writing its events (infra/
# constructs/backfill.py: the ingest timeout plus a margin, 30 s). Here ingest runs in-process,
# with no timeout, and takes milliseconds: 2 s keeps a new metric's backfill quick to watch.
LOCAL_FUNCTION_ENV = {"BACKFILL_SETTLE_SECONDS": "2"}
STACK_NAME = "Tally"
ACCOUNT = "123456789012"
REGION = "us-east-1"
# Types moto cannot create or that the local runtime replaces (see module docstring).
REPLACED_TYPES = {
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventSourceMapping",
    "AWS::CDK::Metadata",
    # moto's CloudFormation cannot create these; locally there is no alarm and no queue policy.
    "AWS::CloudWatch::Alarm",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",  # the TLS-only policy on each topic
    "AWS::SNS::Subscription",  # moto's CloudFormation cannot create it: _subscribe_queues does
    # moto's CloudFormation skips it with a warning; locally a failed asynchronous invoke is not
    # sent to its on-failure destination.
    "AWS::Lambda::EventInvokeConfig",
    # moto's CloudFormation skips it with a warning: _create_secrets makes it before the deploy,
    # with a generated value, and references to it become its ARN.
    "AWS::SecretsManager::Secret",
}
# moto names resources with random suffixes; seeded for the deploy, the same template gets the
# same table names and ARNs on every start, so a user's saved AWS commands keep working.
NAMES_SEED = 8787
TABLE_LABELS = {"EventsTableName": "events", "CountersTableName": "counters", "BillingTableName": "billing items"}
_emulator_log = logging.getLogger("infra.local.aws")
_synthesized: tuple[dict, Path] | None = None  # one synth per process: the template cannot change in it
# What a synthesized template depends on: a synth kept on disk is reused while these are unchanged.
SYNTH_SOURCES = ("infra", "functions", "shared/tally", "cdk.json")
SYNTH_PACKAGES = ("aws-cdk-lib", "constructs", "cdk-nag")


def _local_environment(variables: dict[str, str]) -> dict[str, str]:
    return {**variables, **{k: v for k, v in LOCAL_FUNCTION_ENV.items() if k in variables}}


class LocalStackError(RuntimeError):
    """The local stack cannot start, for a reason the user can fix (one line)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_free(host: str, port: int, what: str) -> None:
    """Fail early and in one line if `port` has a listener (moto's server thread would hang)."""
    if not port:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LocalStackError(f"{what} port {host}:{port} is in use ({exc.strerror}); pick another") from None


@dataclass
class Deployment:
    """What the stack turned into: physical names, outputs, and the running pieces."""

    resources: dict[str, str] = field(default_factory=dict)  # logical id -> physical id
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)  # logical id -> function name


def _prepare_template(template: dict, made: dict[str, str] | None = None) -> dict:
    """The template moto can deploy. `made`: logical id -> physical id of resources the runtime made
    itself (the generated secrets), whose references become that id."""
    prepared = _substituted(json.loads(json.dumps(template)), made or {})
    prepared["Resources"] = {
        logical: resource
        for logical, resource in prepared["Resources"].items()
        if resource["Type"] not in REPLACED_TYPES
    }
    replaced = {k for k, r in template["Resources"].items() if r["Type"] in REPLACED_TYPES and k not in (made or {})}
    for resource in prepared["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            # The Powertools layer lives in AWS's account; locally the installed package is used.
            resource["Properties"].pop("Layers", None)
            # Values naming what the runtime replaces (the API's URL) are set by the runtime itself.
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            for name in [n for n, value in variables.items() if _mentions(value, replaced)]:
                del variables[name]
    prepared["Outputs"] = {
        name: output
        for name, output in prepared.get("Outputs", {}).items()
        if not _mentions(output, replaced)
    }
    prepared.pop("Rules", None)  # CheckBootstrapVersion: the bootstrap stack is faked below
    return prepared


def _substituted(value: Any, made: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in made:
            return made[value["Ref"]]
        return {key: _substituted(item, made) for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item, made) for item in value]
    return value


def _mentions(value: Any, logical_ids: set[str]) -> bool:
    text = json.dumps(value)
    return any(f'"{logical}"' in text for logical in logical_ids)


def _zip_dir(path: Path) -> bytes:
    """The asset folder as the zip moto's Lambda takes (the handlers themselves run from the source
    tree). A CDK asset folder is named by the hash of its content, so its zip is made once and kept
    beside it (`asset.<hash>.zip`, written whole by a rename), for later starts in this process and,
    with a state folder's kept synth, in later processes: zipping ~12,000 files was most of a start.
    Level 1: the archive only travels through memory."""
    kept = path.with_name(path.name + ".zip")
    if kept.is_file():
        return kept.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.write(file, file.relative_to(path))
    data = buffer.getvalue()
    partial = kept.with_name(f"{kept.name}.{os.getpid()}.{threading.get_ident()}.partial")
    partial.write_bytes(data)
    os.replace(partial, kept)
    return data


def _quiet_disabled_metrics() -> None:
    """Metrics are disabled locally (POWERTOOLS_METRICS_DISABLED), yet Powertools still prints the
    accumulated EMF blob each time a metric reaches 100 values, and warns on every cold start that a
    flush found no metric. Locally, drop metrics at the source, and flush nothing quietly."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    original_add, original_flush = AmazonCloudWatchEMFProvider.add_metric, AmazonCloudWatchEMFProvider.flush_metrics
    if getattr(original_add, "_tally_quiet", False):
        return

    def add_metric(self, *args, **kwargs):
        if is_metrics_disabled():
            return None
        return original_add(self, *args, **kwargs)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if is_metrics_disabled() and not self.metric_set:
            return None
        return original_flush(self, raise_on_empty_metrics=raise_on_empty_metrics)

    add_metric._tally_quiet = True  # type: ignore[attr-defined]
    AmazonCloudWatchEMFProvider.add_metric = add_metric
    AmazonCloudWatchEMFProvider.flush_metrics = flush_metrics


class _EmulatorRequestsAtDebug(logging.Filter):
    """werkzeug logs each request to the moto server at INFO: a line every 2 s while any AWS client
    polls. They are emulator traffic, so they go to DEBUG on infra.local.aws."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        _emulator_log.debug("%s", record.getMessage())
        return False


def _quiet_emulator_requests() -> None:
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, _EmulatorRequestsAtDebug) for f in werkzeug.filters):
        werkzeug.addFilter(_EmulatorRequestsAtDebug())


SYNTH_WORK_PREFIX = "tally-cdk-"  # a synth under way (or abandoned by a crash)
SYNTH_ABANDONED_S = 3600  # a synth takes seconds: an older working folder is left over


def synth_key() -> str:
    """A digest of everything the template depends on: the CDK app, the Lambda code asset, cdk.json
    and the CDK libraries' versions."""
    from infra.assets import REPO_ROOT

    digest = hashlib.sha256()
    for package in SYNTH_PACKAGES:
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    for source in SYNTH_SOURCES:
        root = REPO_ROOT / source
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                content = file.read_bytes()
                digest.update(f"{file.relative_to(REPO_ROOT)}\0{len(content)}\0".encode())
                digest.update(content)
    return digest.hexdigest()[:20]


def _synthesize(cache: Path | None, progress: Callable[[str], None]) -> tuple[dict, Path]:
    """The template and its cloud assembly folder (for the assets): synthesized once per process,
    and kept in `cache` (when given) for later processes while its sources are unchanged. Processes
    may share a cache at once (the test workers): each synthesizes into a folder of its own, the
    first rename wins, and only finished synths of other sources, or abandoned folders, are removed."""
    global _synthesized
    if _synthesized is not None:
        return _synthesized
    key = synth_key() if cache is not None else None
    kept = cache / key if cache is not None else None
    if kept is not None and (kept / "template.json").exists():
        progress("reusing the synthesized CDK app (its sources are unchanged)")
        _synthesized = (json.loads((kept / "template.json").read_text()), kept)
        return _synthesized
    progress("synthesizing the CDK app")
    from infra.app import synth_template

    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    outdir = Path(tempfile.mkdtemp(prefix=SYNTH_WORK_PREFIX, dir=cache))
    if cache is None:  # nothing keeps it: gone with the process (each was ~200 MB left in /tmp)
        atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    template = synth_template(str(outdir))
    if kept is not None:
        (outdir / "template.json").write_text(json.dumps(template))  # written last: marks a whole synth
        for old in cache.iterdir():
            working = old.name.startswith(SYNTH_WORK_PREFIX)
            if old not in (outdir, kept) and (not working or time.time() - old.stat().st_mtime > SYNTH_ABANDONED_S):
                shutil.rmtree(old, ignore_errors=True)
        try:
            outdir.rename(kept)
            outdir = kept
        except OSError:  # another process kept the same sources' synth first: use that one
            if not (kept / "template.json").exists():
                raise
            shutil.rmtree(outdir, ignore_errors=True)
            outdir = kept
    _synthesized = (template, outdir)
    return _synthesized


class LocalStack:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 moto_port: int = 0, live_pump: bool = True, schedule_interval: float | None = None,
                 state_dir: Path | None = None, fresh: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        self.host = host
        # Seconds between local schedule ticks; None: each EventBridge rule's own rate.
        self.schedule_interval = schedule_interval
        self.port = port
        self.moto_port = moto_port  # 0: a free port, chosen at start
        self.api_key = api_key
        self.live_pump = live_pump
        # Without a state folder, everything lives in memory only (the tests' stacks).
        self.state_dir = Path(state_dir).resolve() if state_dir is not None else None
        self.fresh = fresh
        self.restored: str | None = None  # the "restored state as of ..." line, or None when started empty
        self._progress = progress or (lambda step: None)
        self.deployment = Deployment()
        self._threads: list[threading.Thread] = []
        self._saver = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "LocalStack":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "LocalStack":
        ensure_free(self.host, self.port, "the API")
        ensure_free(self.host, self.moto_port, "the AWS endpoint")
        self.moto_port = self.moto_port or free_port(self.host)
        saved = self._claim_state()
        os.environ.update(LOCAL_ENV)
        # DynamoDB does number arithmetic (ADD) with 38 significant digits; moto uses the decimal
        # module's default context (28). Threads started from now on inherit DefaultContext.
        decimal.DefaultContext.prec = 38
        decimal.getcontext().prec = 38
        os.environ.pop("AWS_ENDPOINT_URL", None)
        from moto import mock_aws
        from moto.server import ThreadedMotoServer

        from infra.local import moto_patches
        from infra.local.lambdas import LocalLambdas

        # A stack without a state folder may still share a synth cache (TALLY_SYNTH_CACHE: the tests').
        shared_cache = os.environ.get("TALLY_SYNTH_CACHE")
        synth_cache = self.state_dir / "synth" if self.state_dir is not None else Path(shared_cache) if shared_cache else None
        self.template, assets = _synthesize(synth_cache, self._progress)
        self._progress("deploying into moto")
        # Step Functions executions really run (LocalWorkflows recreates the state machines there).
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()  # in-process clients (the handlers) reach moto without HTTP
        _quiet_emulator_requests()
        self._moto_server = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
        self._moto_server.start()  # same backends, for any other AWS client
        os.environ["MOTO_PORT"] = str(self.moto_port)

        self.lambdas = LocalLambdas()
        moto_patches.install(self.lambdas)
        _quiet_disabled_metrics()
        self._deploy(assets)
        resume = {}
        if saved is not None:
            self._progress("restoring state")
            resume = self._restore(saved)
        self._progress("starting handlers")
        self._start_pump(moto_patches, resume)
        self._start_workflows()
        self._start_http()
        self._ensure_api_key(saved.api_key if saved is not None else None)
        self._start_saving()
        return self

    def stop(self) -> None:
        workflows = getattr(self, "workflows", None)
        if workflows is not None:
            workflows.stop()
        http = getattr(self, "http", None)
        if http is not None:
            http.close()  # requests in flight finish first: all that was answered is in the last snapshot
        pump = getattr(self, "pump", None)
        if pump is not None:
            pump.stop()
        queue_pump = getattr(self, "queue_pump", None)
        if queue_pump is not None:
            queue_pump.stop()
        if self._saver is not None:
            self._saver.stop()  # the last snapshot, while moto still holds the data
            self._saver = None
        server = getattr(self, "_moto_server", None)
        if server is not None and server._thread is not None:
            server.stop()
        mock = getattr(self, "_mock", None)
        if mock is not None:
            mock.stop()
        state = getattr(self, "_state", None)
        if state is not None:
            state.release()

    # -- state across restarts (infra/local/state.py) ---------------------------------------------
    def _claim_state(self):
        """Lock the state folder and read its snapshot (None: start empty)."""
        if self.state_dir is None:
            return None
        from infra.local.state import StateDir, StateError

        self._state = StateDir(self.state_dir)
        try:
            self._state.claim()
            if self.fresh:
                self._state.discard()
            return self._state.load()
        except StateError as exc:
            raise LocalStackError(str(exc)) from None

    def _restore(self, saved) -> dict[tuple[str, str], int]:
        from infra.local.state import finish_backfills, restore

        try:
            resume = restore(self, saved)
            finish_backfills()
        except Exception as exc:  # noqa: BLE001 - a snapshot this template cannot take: say so in one line
            raise LocalStackError(f"cannot restore {self.state_dir}: {exc!r}; start with --fresh to discard it") from exc
        logical = {physical: name for name, physical in self.deployment.resources.items()}
        labels = {logical[self.deployment.outputs[output]]: label
                  for output, label in TABLE_LABELS.items() if output in self.deployment.outputs}
        self.restored = saved.summary(labels)
        return resume

    def _start_saving(self) -> None:
        if self.state_dir is None:
            return
        from infra.local.state import StateSaver, capture, fingerprint

        self._saver = StateSaver(self._state, lambda: capture(self, self.api_key), lambda: fingerprint(self))
        self._saver.save_if_changed()  # the state as of now, restored or empty, is on disk at once
        self._saver.start()

    # -- deploy --------------------------------------------------------------------------------
    def _deploy(self, outdir: Path) -> None:
        import boto3
        from moto.moto_api._internal import mock_random

        boto3.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True)
        s3 = boto3.client("s3")
        bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
        s3.create_bucket(Bucket=bucket)
        for resource in self.template["Resources"].values():
            code = resource.get("Properties", {}).get("Code", {})
            if resource["Type"] == "AWS::Lambda::Function" and "S3Key" in code:
                asset = outdir / ("asset." + code["S3Key"].removesuffix(".zip"))
                s3.put_object(Bucket=bucket, Key=code["S3Key"], Body=_zip_dir(asset))

        secrets = self._create_secrets()
        cloudformation = boto3.client("cloudformation")
        mock_random.seed(NAMES_SEED)
        try:
            cloudformation.create_stack(
                StackName=STACK_NAME,
                TemplateBody=json.dumps(_prepare_template(self.template, secrets)),
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            )
        finally:
            mock_random.seed()  # ids drawn from now on (message ids, stream event ids) are random again
        stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise RuntimeError(f"local deploy failed: {stack['StackStatus']} {stack.get('StackStatusReason')}")
        self._localize_queue_urls()
        stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        self.deployment.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self.deployment.resources.update(secrets)
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK_NAME):
            for summary in page["StackResourceSummaries"]:
                self.deployment.resources[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]

        from infra.local.lambdas import FunctionSpec

        aws_lambda = boto3.client("lambda")
        for logical, resource in self.template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            name = self.deployment.resources[logical]
            config = aws_lambda.get_function_configuration(FunctionName=name)
            self.deployment.functions[logical] = name
            self.lambdas.register(
                FunctionSpec(
                    name=name,
                    handler=config["Handler"],
                    environment=_local_environment(config.get("Environment", {}).get("Variables", {})),
                    timeout=config.get("Timeout", 30),
                    memory=config.get("MemorySize", 512),
                    arn=config["FunctionArn"],
                )
            )
        from tally import wiring

        wiring.reset()  # table names may differ from a previous deployment in this process

    def _create_secrets(self) -> dict[str, str]:
        """The template's generated secrets (the page signing key), which moto's CloudFormation
        skips: made here with a fresh random value of the template's length and alphabet (never
        moto's seeded generator: each local stack gets its own key). Logical id -> ARN."""
        import secrets as random_source
        import string

        import boto3

        client = boto3.client("secretsmanager")
        made: dict[str, str] = {}
        for logical, resource in self.template["Resources"].items():
            if resource["Type"] != "AWS::SecretsManager::Secret":
                continue
            props = resource.get("Properties", {})
            generate = props.get("GenerateSecretString", {})
            alphabet = string.ascii_letters + string.digits
            if not generate.get("ExcludePunctuation"):
                alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
            value = "".join(random_source.choice(alphabet) for _ in range(int(generate.get("PasswordLength", 32))))
            arn = client.create_secret(Name=props.get("Name") or f"{STACK_NAME}-{logical}", SecretString=value,
                                       Description=props.get("Description", ""))["ARN"]
            made[logical] = arn
        return made

    def _localize_queue_urls(self) -> None:
        """A queue's URL as an output: moto's CloudFormation gives AWS's public form, which no
        client of the local endpoint can reach; point it at the local endpoint, as moto's own
        CreateQueue and GetQueueUrl do."""
        from moto.cloudformation.models import cloudformation_backends

        public = f"https://sqs.{REGION}.amazonaws.com/"
        for stack in cloudformation_backends[ACCOUNT][REGION].stacks.values():
            for output in stack.output_map.values():  # parsed once by moto, then served as is
                if output is not None and isinstance(output.value, str) and output.value.startswith(public):
                    output.value = f"{self.aws_endpoint}/{output.value.removeprefix(public)}"

    def _start_pump(self, moto_patches, resume: dict[tuple[str, str], int]) -> None:
        import boto3
        from moto.dynamodb.models import dynamodb_backends

        from infra.local.stream_pump import MappingConfig, StreamPump, sqs_on_failure

        tables = dynamodb_backends[ACCOUNT][REGION].tables

        def shard_of(table: str):
            shard = tables[table].stream_shard
            return SimpleNamespace(id=shard.id, items=moto_patches.committed_records(shard))

        self.pump = StreamPump(self.lambdas, shard_of)
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        queue_mappings = []
        for resource in self.template["Resources"].values():
            if resource["Type"] != "AWS::Lambda::EventSourceMapping":
                continue
            props = resource["Properties"]
            if props["EventSourceArn"]["Fn::GetAtt"][1] != "StreamArn":  # an SQS queue (queue_pump.py)
                queue_mappings.append(props)
                continue
            table = self.deployment.resources[props["EventSourceArn"]["Fn::GetAtt"][0]]
            destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            on_failure = None
            if destination:
                queue_url = self.deployment.resources[destination["Fn::GetAtt"][0]]
                on_failure = sqs_on_failure(sqs, queue_url)
            self.pump.add_mapping(
                MappingConfig(
                    function=self.deployment.resources[props["FunctionName"]["Ref"]],
                    table_name=table,
                    stream_arn=dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"],
                    batch_size=int(props.get("BatchSize", 100)),
                    batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    bisect=bool(props.get("BisectBatchOnFunctionError", False)),
                    report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                    max_retries=int(props.get("MaximumRetryAttempts", -1)),
                    filters=[json.loads(f["Pattern"]) for f in props.get("FilterCriteria", {}).get("Filters", [])],
                    on_failure=on_failure,
                )
            )
        self.pump.resume_at(resume)
        moto_patches.on_stream_record(self.pump.notify)
        if self.live_pump:
            thread = threading.Thread(target=self.pump.run_forever, name="stream-pump", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._start_queue_pump(sqs, queue_mappings)

    def _subscribe_queues(self, sqs) -> None:
        """The template's SNS -> SQS subscriptions (the invoice delivery queue), made directly."""
        import boto3

        sns = boto3.client("sns")
        for resource in self.template["Resources"].values():
            if resource["Type"] != "AWS::SNS::Subscription":
                continue
            props = resource["Properties"]
            queue_url = self.deployment.resources[props["Endpoint"]["Fn::GetAtt"][0]]
            attributes = {"RawMessageDelivery": "true" if props.get("RawMessageDelivery") else "false"}
            if "FilterPolicy" in props:
                attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
            sns.subscribe(
                TopicArn=self.deployment.resources[props["TopicArn"]["Ref"]],
                Protocol=props["Protocol"],
                Endpoint=sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
                Attributes=attributes,
            )

    def _start_queue_pump(self, sqs, mappings: list[dict]) -> None:
        from infra.local.queue_pump import QueueMapping, QueuePump

        self._subscribe_queues(sqs)

        self.queue_pump = QueuePump(self.lambdas, sqs, REGION)
        for props in mappings:
            queue_url = self.deployment.resources[props["EventSourceArn"]["Fn::GetAtt"][0]]
            self.queue_pump.add_mapping(QueueMapping(
                function=self.deployment.resources[props["FunctionName"]["Ref"]],
                queue_url=queue_url,
                queue_arn=sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
                batch_size=int(props.get("BatchSize", 10)),
                report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            ))
        if self.live_pump and self.queue_pump.mappings:
            thread = threading.Thread(target=self.queue_pump.run_forever, name="queue-pump", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _start_workflows(self) -> None:
        from infra.local.workflows import LocalWorkflows

        self.workflows = LocalWorkflows(self.template, self.deployment.resources, STACK_NAME, REGION, ACCOUNT)
        self.workflows.deploy()
        self.workflows.start_schedules(self.schedule_interval, log=lambda line: print(line, flush=True))

    def _start_http(self) -> None:
        from infra.local.http_gateway import LocalHttpApi, routes_from_template

        routes = routes_from_template(self.template, self.deployment.functions)
        self.http = LocalHttpApi(self.lambdas, routes, self.host, self.port,
                                 local_routes=self.workflows.local_routes())
        thread = threading.Thread(target=self.http.server.serve_forever, name="http-api", daemon=True)
        thread.start()
        self._threads.append(thread)
        # The template's TALLY_API_URL names the HTTP API this gateway stands in for (GET /v1/services).
        from tally.settings import get_settings

        os.environ["TALLY_API_URL"] = f"http://{self.host}:{self.http.port}"
        get_settings.cache_clear()

    def _ensure_api_key(self, remembered: str | None) -> None:
        """The key given, else the one a restored stack used (so saved commands still work), else a
        new one. A key the restored data already knows is kept as it is (same id)."""
        from tally import wiring
        from tally.billing.errors import Unauthorized
        from tally.services.api_keys import new_api_key

        keys = wiring.api_keys()
        candidate = self.api_key or remembered
        if candidate is not None:
            try:
                keys.verify(f"Bearer {candidate}")
                self.api_key = candidate
                return
            except Unauthorized:
                pass
        self.api_key = self.api_key or new_api_key()  # a remembered key since revoked stays revoked
        keys.create("local", self.api_key)

    # -- facts for users -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http.port}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    def table(self, output: str) -> str:
        return self.deployment.outputs[output]
