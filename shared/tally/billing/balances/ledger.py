"""Typed ledger entries: every change of a segment's balance, so a balance is always explainable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from tally.billing.balances.grants import GrantKind


class LedgerEntryType(str, Enum):
    """Metronome's names (metronome-sdk shared/commit.py and shared/credit.py)."""

    PREPAID_COMMIT_SEGMENT_START = "PREPAID_COMMIT_SEGMENT_START"
    PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION = "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION"
    PREPAID_COMMIT_ROLLOVER = "PREPAID_COMMIT_ROLLOVER"
    PREPAID_COMMIT_EXPIRATION = "PREPAID_COMMIT_EXPIRATION"
    PREPAID_COMMIT_MANUAL = "PREPAID_COMMIT_MANUAL"
    PREPAID_COMMIT_CANCELED = "PREPAID_COMMIT_CANCELED"
    POSTPAID_COMMIT_INITIAL_BALANCE = "POSTPAID_COMMIT_INITIAL_BALANCE"
    POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION = "POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION"
    POSTPAID_COMMIT_ROLLOVER = "POSTPAID_COMMIT_ROLLOVER"
    POSTPAID_COMMIT_TRUEUP = "POSTPAID_COMMIT_TRUEUP"
    POSTPAID_COMMIT_MANUAL = "POSTPAID_COMMIT_MANUAL"
    POSTPAID_COMMIT_EXPIRATION = "POSTPAID_COMMIT_EXPIRATION"
    CREDIT_SEGMENT_START = "CREDIT_SEGMENT_START"
    CREDIT_AUTOMATED_INVOICE_DEDUCTION = "CREDIT_AUTOMATED_INVOICE_DEDUCTION"
    CREDIT_ROLLOVER = "CREDIT_ROLLOVER"
    CREDIT_EXPIRATION = "CREDIT_EXPIRATION"
    CREDIT_MANUAL = "CREDIT_MANUAL"
    CREDIT_CANCELED = "CREDIT_CANCELED"


class Movement(str, Enum):
    """What happened, whatever the grant kind. The order of the members is the order in which
    movements at one instant are applied (see burn_down)."""

    ROLLOVER = "ROLLOVER"
    EXPIRATION = "EXPIRATION"
    TRUEUP = "TRUEUP"
    START = "START"
    MANUAL = "MANUAL"
    # A voided invoice's drawdown given back. Dated at the deduction it reverses and listed just
    # before it, so a replay of the ledger never dips below what the segment had.
    CANCELED = "CANCELED"
    DEDUCTION = "DEDUCTION"

    @property
    def rank(self) -> int:
        return list(Movement).index(self)


_TYPES = {
    GrantKind.PREPAID: {
        Movement.START: LedgerEntryType.PREPAID_COMMIT_SEGMENT_START,
        Movement.DEDUCTION: LedgerEntryType.PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION,
        Movement.ROLLOVER: LedgerEntryType.PREPAID_COMMIT_ROLLOVER,
        Movement.EXPIRATION: LedgerEntryType.PREPAID_COMMIT_EXPIRATION,
        Movement.MANUAL: LedgerEntryType.PREPAID_COMMIT_MANUAL,
        Movement.CANCELED: LedgerEntryType.PREPAID_COMMIT_CANCELED,
    },
    GrantKind.POSTPAID: {
        Movement.START: LedgerEntryType.POSTPAID_COMMIT_INITIAL_BALANCE,
        Movement.DEDUCTION: LedgerEntryType.POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION,
        Movement.ROLLOVER: LedgerEntryType.POSTPAID_COMMIT_ROLLOVER,
        Movement.TRUEUP: LedgerEntryType.POSTPAID_COMMIT_TRUEUP,
        Movement.EXPIRATION: LedgerEntryType.POSTPAID_COMMIT_EXPIRATION,
        Movement.MANUAL: LedgerEntryType.POSTPAID_COMMIT_MANUAL,
    },
    GrantKind.CREDIT: {
        Movement.START: LedgerEntryType.CREDIT_SEGMENT_START,
        Movement.DEDUCTION: LedgerEntryType.CREDIT_AUTOMATED_INVOICE_DEDUCTION,
        Movement.ROLLOVER: LedgerEntryType.CREDIT_ROLLOVER,
        Movement.EXPIRATION: LedgerEntryType.CREDIT_EXPIRATION,
        Movement.MANUAL: LedgerEntryType.CREDIT_MANUAL,
        Movement.CANCELED: LedgerEntryType.CREDIT_CANCELED,
    },
}
_MOVEMENTS = {entry_type: movement for types in _TYPES.values() for movement, entry_type in types.items()}


def entry_type(kind: GrantKind, movement: Movement) -> LedgerEntryType:
    return _TYPES[kind][movement]


def has_entry_type(kind: GrantKind, movement: Movement) -> bool:
    """Metronome has no type for some pairs (a postpaid commit is never canceled)."""
    return movement in _TYPES[kind]


def movement_of(entry_type: LedgerEntryType) -> Movement:
    return _MOVEMENTS[entry_type]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    grant_id: str
    segment_id: str
    type: LedgerEntryType
    amount: Decimal  # signed: what the entry adds to the segment's balance
    timestamp: datetime
    invoice_id: str | None = None  # deductions and true-ups
    reason: str | None = None  # manual entries
    # A deduction by a draft invoice, or a segment end (rollover, expiration, true-up) while an
    # invoice it served may still change. Finalized invoices' deductions are never pending.
    pending: bool = False
    contract_id: str | None = None  # deductions: the contract whose invoice drew

    @property
    def movement(self) -> Movement:
        return movement_of(self.type)


@dataclass(frozen=True, slots=True)
class ManualEntry:
    """An operator's adjustment (contracts/addManualBalanceEntry): positive adds, negative draws."""

    grant_id: str
    segment_id: str
    amount: Decimal
    timestamp: datetime
    reason: str
