"""Commits, credits and their burn-down ledger.

Pure domain: no AWS, no environment, no clock. The caller passes every grant, charge and manual
entry of one customer and the instant to compute at; see burn_down.py for the rules.
"""

from tally.billing.balances.burn_down import (
    BalanceFilter,
    BurnCheckpoint,
    BurnDown,
    SegmentBalance,
    SegmentState,
    TrueUp,
    burn_down,
    check_manual_entry,
    checkpoint_burn,
    grants_digest,
    manual_digest,
    net_balance,
    resumable,
)
from tally.billing.balances.eligibility import (
    Charge,
    applicable_product_count,
    burn_rank,
    grant_applies_to,
    segment_edges,
)
from tally.billing.balances.grants import (
    AccessSegment,
    Application,
    AmountDistribution,
    CommitRateType,
    Grant,
    GrantKind,
    InvoiceItem,
    RecurringFrequency,
    RecurringSchedule,
    Specifier,
    expand_recurring_schedule,
    validate_grant,
)
from tally.billing.balances.ledger import LedgerEntry, LedgerEntryType, ManualEntry, Movement

__all__ = [
    "AccessSegment", "AmountDistribution", "Application", "BalanceFilter", "BurnCheckpoint", "BurnDown", "Charge", "CommitRateType", "Grant",
    "GrantKind", "InvoiceItem", "LedgerEntry", "LedgerEntryType", "ManualEntry", "Movement", "RecurringFrequency",
    "RecurringSchedule", "SegmentBalance", "Specifier", "TrueUp", "applicable_product_count", "burn_down",
    "burn_rank", "check_manual_entry", "checkpoint_burn", "grants_digest", "manual_digest", "resumable", "SegmentState", "expand_recurring_schedule", "grant_applies_to", "net_balance",
    "segment_edges", "validate_grant",
]
