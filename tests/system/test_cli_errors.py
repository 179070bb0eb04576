"""Every `tally` command, run with a user's mistake, exits non-zero with one red line naming the
problem and no traceback.

The CLI runs as a user runs it (`python -m infra.cli` in a subprocess). Most cases need nothing
running: an endpoint is a port that refuses connections. The cases about what a deployment holds
(an unknown key id, stack or table) use the session's local stack.
"""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys

import pytest
import typer

from tests.system.conftest import API_KEY


@pytest.fixture(scope="module")
def closed_port():
    """A port bound but not listening: every connection to it is refused, and nothing else takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def without_aws(home) -> dict[str, str]:
    """This environment with no AWS_* variable and an empty home (no ~/.aws): nothing configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TALLY_API_KEY"}
    return {**env, "HOME": str(home)}


def against_aws_with(home, **variables: str) -> dict[str, str]:
    """Nothing configured but `variables`; no instance-metadata lookup, so nothing can reach real AWS."""
    return {**without_aws(home), "AWS_EC2_METADATA_DISABLED": "true", **variables}


def tally(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], capture_output=True, text=True,
                          env=env if env is not None else os.environ, timeout=120)


def assert_one_clear_line(run: subprocess.CompletedProcess, exit_code: int, *names: str) -> None:
    """Exit `exit_code`, no traceback, and stderr is one `error:` line containing each of `names`."""
    output = run.stdout + run.stderr
    assert "Traceback" not in output, output[-3000:]
    assert run.returncode == exit_code, output[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])


# -- no stack needed ---------------------------------------------------------------------------------
def closed(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# (args, environment, exit code, what the line must name); {closed} is a refusing endpoint.
NOTHING_RUNNING = {
    "keys list, local endpoint down, no AWS set-up": (
        ["keys", "list", "--endpoint-url", "{closed}"], "no aws", 1, ["cannot reach", "{closed}"]),
    "keys create, local endpoint down, no AWS set-up": (
        ["keys", "create", "backend", "--endpoint-url", "{closed}"], "no aws", 1, ["cannot reach", "{closed}"]),
    "keys revoke, local endpoint down, no AWS set-up": (
        ["keys", "revoke", "some-id", "--endpoint-url", "{closed}"], "no aws", 1, ["cannot reach", "{closed}"]),
    "keys with an endpoint that is not a URL": (
        ["keys", "list", "--endpoint-url", "localhost:4566"], "no aws", 2, ["--endpoint-url", "localhost:4566"]),
    "keys against AWS with no credentials": (
        ["keys", "list"], "region only", 1, ["no AWS credentials"]),
    "keys against AWS with no region": (
        ["keys", "list"], "no aws", 1, ["no AWS region"]),
    "keys revoke without a key id": (
        ["keys", "revoke"], "no aws", 2, ["Missing argument", "KEY_ID"]),
    "keys create with an empty name": (
        ["keys", "create", " ", "--endpoint-url", "{closed}"], "no aws", 2, ["NAME"]),
    "local tail of an unknown topic": (
        ["local", "tail", "bogus"], "no aws", 2, ["'bogus'", "alerts", "invoices"]),
    "local tail, local endpoint down, no AWS set-up": (
        ["local", "tail", "alerts", "--endpoint-url", "{closed}"], "no aws", 1, ["cannot reach", "{closed}"]),
    "local close-periods without an API key": (
        ["local", "close-periods"], "no aws", 2, ["--api-key", "TALLY_API_KEY"]),
    "local close-periods as of a time that is not a date": (
        ["local", "close-periods", "--api-key", "k", "--as-of", "soon"], "no aws", 2, ["--as-of 'soon'"]),
    "local close-periods as of a time without a zone": (
        ["local", "close-periods", "--api-key", "k", "--as-of", "2025-02-02T00:00:00"], "no aws", 2,
        ["--as-of '2025-02-02T00:00:00'", "timezone"]),
    "local close-periods with no stack running": (
        ["local", "close-periods", "--api-key", "k", "--endpoint", "{closed}"], "no aws", 1,
        ["cannot reach", "{closed}", "tally local up"]),
    "local close-periods with an endpoint that is not a URL": (
        ["local", "close-periods", "--api-key", "k", "--endpoint", "127.0.0.1:8787"], "no aws", 2, ["--endpoint"]),
    "local dashboard without an API key": (
        ["local", "dashboard", "c-1"], "no aws", 2, ["--api-key", "TALLY_API_KEY"]),
    "local dashboard of an unknown kind": (
        ["local", "dashboard", "c-1", "--dashboard", "billing", "--api-key", "k"], "no aws", 2, ["'billing'", "usage"]),
    "local dashboard with no stack running": (
        ["local", "dashboard", "c-1", "--api-key", "k", "--endpoint", "{closed}"], "no aws", 1,
        ["cannot reach", "{closed}", "tally local up"]),
    "local up with a port that is not a number": (
        ["local", "up", "--port", "eighty"], "no aws", 2, ["--port", "integer"]),
    "bench writing its figures into a missing folder": (
        ["bench", "--quick", "--json", "/no-such-folder/figures.json"], "no aws", 1,
        ["--json", "/no-such-folder/figures.json"]),
    "an unknown command": (
        ["bill"], "no aws", 2, ["No such command", "bill"]),
}


@pytest.mark.parametrize("args, environment, exit_code, names", NOTHING_RUNNING.values(), ids=NOTHING_RUNNING.keys())
def test_a_mistake_is_one_line_and_a_non_zero_exit(closed_port, tmp_path, args, environment, exit_code, names):
    env = without_aws(tmp_path) if environment == "no aws" else against_aws_with(tmp_path, AWS_DEFAULT_REGION="eu-west-1")
    fill = {"closed": closed(closed_port)}

    run = tally(*(arg.format(**fill) for arg in args), env=env)

    assert_one_clear_line(run, exit_code, *(name.format(**fill) for name in names))


def commands(group, path=("tally",)):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


def test_every_help_text_is_whole_sentences_and_every_parameter_has_help():
    """Rich help keeps a docstring's line breaks (the command list shows the first paragraph as written),
    so each paragraph must be one line in the source."""
    from infra.cli import app

    found = list(commands(typer.main.get_command(app)))
    assert {" ".join(path) for path, _ in found} >= {"tally keys revoke", "tally local tail", "tally bench"}
    for path, command in found:
        paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
        assert paragraphs[0], f"{' '.join(path)} has no help"
        broken = [p for p in paragraphs if "\n" in p]
        assert not broken, f"{' '.join(path)}: a paragraph breaks mid-sentence: {broken[0]!r}"
        for param in command.params:
            assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help"


# -- against the session's local stack ---------------------------------------------------------------
def on_stack(local_stack, *args: str, env=None) -> subprocess.CompletedProcess:
    return tally(*args, "--endpoint-url", local_stack.aws_endpoint, env=env)


@pytest.mark.system
def test_keys_work_against_the_local_endpoint_with_no_aws_variables_set(local_stack, tmp_path):
    env = without_aws(tmp_path)

    created = on_stack(local_stack, "keys", "create", "no-aws-setup", env=env)
    assert created.returncode == 0, created.stderr[-3000:]
    key_id = created.stdout.splitlines()[0].split()[-1]
    listed = on_stack(local_stack, "keys", "list", env=env)
    revoked = on_stack(local_stack, "keys", "revoke", key_id, env=env)

    assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr[-3000:]
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout, revoked.stderr[-3000:]


@pytest.mark.system
@pytest.mark.parametrize("args, names", [
    (["keys", "revoke", "no-such-id"], ["api key no-such-id not found"]),
    (["keys", "list", "--stack", "Nope"], ["stack 'Nope' not found", "--stack"]),
    (["keys", "list", "--table", "no-such-table"], ["billing table 'no-such-table' not found", "--table"]),
    (["local", "tail", "invoices", "--stack", "Nope"], ["stack 'Nope' not found"]),
], ids=["keys revoke of an unknown key id", "keys of an unknown stack", "keys of an unknown table",
        "local tail of an unknown stack"])
def test_a_mistake_about_the_deployment_is_one_line(local_stack, tmp_path, args, names):
    run = on_stack(local_stack, *args, env=without_aws(tmp_path))

    assert_one_clear_line(run, 1, *names)


@pytest.mark.system
def test_a_configured_region_other_than_the_local_stacks_is_named(local_stack, tmp_path):
    run = on_stack(local_stack, "keys", "list", env={**without_aws(tmp_path), "AWS_DEFAULT_REGION": "eu-west-1"})

    assert_one_clear_line(run, 1, "stack 'Tally' not found in eu-west-1", "runs in us-east-1")


@pytest.mark.system
def test_close_periods_with_a_wrong_api_key_is_one_line(local_stack, tmp_path):
    run = tally("local", "close-periods", "--endpoint", local_stack.base_url, "--api-key", API_KEY + "-wrong",
                env=without_aws(tmp_path))

    assert_one_clear_line(run, 1, "401", "not valid")


@pytest.mark.system
def test_the_dashboard_of_an_unknown_customer_is_one_line(local_stack, tmp_path):
    run = tally("local", "dashboard", "no-such-customer", "--endpoint", local_stack.base_url, "--api-key", API_KEY,
                env=without_aws(tmp_path))

    assert_one_clear_line(run, 1, "404", "customer no-such-customer not found")
