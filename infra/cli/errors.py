"""Expected failures of `tally` commands: one red line on stderr and a non-zero exit, never a traceback.

Every command under the `tally` app gets this through `TallyGroup`, the root group's class. A command
raises `UserError` for a mistake it detects itself; `explain` names the exceptions that libraries
raise for a user's mistake or environment (botocore, the domain's `TallyError`s) and turns them
into one line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

# Exit codes, as click uses them: 1 the command failed, 2 it was called wrongly.
FAILED = 1
USAGE = 2

_stderr = Console(stderr=True)

# Recent typer vendors click (typer._click), older typer uses click itself: find the one in use through
# a public typer class. NoArgsIsHelpError (click >= 8.2) is the usage "error" that shows the help.
_UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
_NoArgsIsHelp = getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", ())


class UserError(Exception):
    """A failure the user can fix (wrong input, nothing running, no credentials): `message` is the whole story."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def explain(exc: BaseException) -> UserError | None:
    """The one line for an exception that means the user's input or environment is wrong; None for a bug."""
    if isinstance(exc, UserError):
        return exc
    from tally.billing.errors import InvalidInput, TallyError

    if isinstance(exc, InvalidInput):
        return UserError(exc.message, USAGE)
    if isinstance(exc, TallyError):
        return UserError(exc.message)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return UserError(f"{exc.strerror.lower()}: is another `tally local up` running? (pick other ports)")
    return _explain_aws(exc)


def _explain_aws(exc: BaseException) -> UserError | None:
    from botocore import exceptions as aws

    if isinstance(exc, aws.NoRegionError):
        return UserError("no AWS region configured: set AWS_REGION (or a profile's region), "
                         "or pass --endpoint-url for a local stack")
    if isinstance(exc, aws.NoCredentialsError):
        return UserError("no AWS credentials found: run `aws configure` or set AWS_PROFILE "
                         "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or pass --endpoint-url for a local stack")
    if isinstance(exc, aws.EndpointConnectionError):
        return UserError(f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url', '')}: "
                         "is `tally local up` running, and is --endpoint-url the one it printed?")
    if isinstance(exc, (aws.ConnectTimeoutError, aws.ReadTimeoutError)):
        return UserError(f"the AWS endpoint did not answer in time: {exc}")
    if isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        return UserError(f"AWS {exc.operation_name} failed: {error.get('Code')}: {error.get('Message')}")
    if isinstance(exc, aws.BotoCoreError):  # configuration: an unknown profile, partial credentials, ...
        return UserError(f"AWS configuration: {exc}")
    return None


def report(error: UserError) -> None:
    """Print `error` as one red line on stderr (soft-wrapped: a narrow terminal folds it, nothing breaks it)."""
    _stderr.print(Text(f"error: {error.message}", style="red"), soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into one red line and their exit code; let bugs raise.

    Use as `with user_errors():` or as a decorator, `@user_errors()`, on a command of a typer app that is
    run on its own; commands under the `tally` app already run inside it (see `TallyGroup`).
    """
    try:
        yield
    except _NoArgsIsHelp:
        raise  # click shows the help
    except _UsageError as exc:  # a subcommand's arguments, parsed inside the root group's invoke
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        report(UserError(exc.format_message() + where, exc.exit_code))
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # noqa: BLE001 - re-raised unless explain() knows it
        error = explain(exc)
        if error is None:
            raise
        report(error)
        raise typer.Exit(error.exit_code) from None


class TallyGroup(TyperGroup):
    """The root group: every subcommand, including groups added later with `app.add_typer`, runs inside
    `user_errors()`."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        with user_errors():
            return super().invoke(ctx)
