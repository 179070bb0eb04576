"""Domain errors. One base class; the API edge maps each kind to an HTTP status."""

from __future__ import annotations


class TallyError(Exception):
    """Base of every error the domain and services raise on purpose."""

    status = 500
    kind = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(TallyError):
    """A request field broke a rule. `field` is a dotted path, e.g. `usage[3].timestamp`."""

    status = 400
    kind = "invalid_request"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class NotFound(TallyError):
    status = 404
    kind = "not_found"


class Conflict(TallyError):
    status = 409
    kind = "conflict"


class Unauthorized(TallyError):
    status = 401
    kind = "unauthorized"
