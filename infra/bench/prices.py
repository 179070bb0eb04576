"""AWS public list prices for one region, us-east-1 (US East, N. Virginia), the only place the cost
figures of `tally bench` and `tally capacity` take a price from.

Each price names the AWS pricing page it is listed on, the day it was taken, and how far it was
confirmed: AWS's pricing pages render their figures with JavaScript, so the stored text of a page
sometimes lacks the number; then the figure is checked against the secondary source named, and
`confirmed` says so. First-tier prices, without the free tier: a cost per million events should not
depend on the rest of the account's bill. Quotas the capacity plan compares against are at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

REGION = "us-east-1"
TAKEN_ON = "2026-12-06"  # the provisioned unit-hours and their quotas: 2026-12-07


@dataclass(frozen=True)
class Price:
    usd: Decimal  # per `unit`
    unit: str
    source: str  # the AWS page that lists it
    confirmed: str  # how the figure was checked
    short: str = ""  # the unit in a table's quantity column


API_GATEWAY_HTTP_REQUEST = Price(
    Decimal("1.00") / 1_000_000, "HTTP API request (first 300 million a month; metered per 512 KB)",
    "Amazon API Gateway pricing (aws.amazon.com/api-gateway/pricing), HTTP APIs",
    "figure not in the stored text of the AWS page; $1.00 per million in the guides citing it "
    "(amnic.com, awsforengineers.com, apigatewaycost.com)",
    short="requests",
)
# The stack deploys x86_64 (infra/constructs/tally_function.py: the Powertools layer is the x86 build).
LAMBDA_GB_SECOND = Price(
    Decimal("0.0000166667"), "GB-second, x86 (first 6 billion GB-s a month), billed per 1 ms",
    "AWS Lambda pricing (aws.amazon.com/lambda/pricing), x86 duration",
    "AWS whitepaper 'How AWS Pricing Works', Lambda: $0.00001667 per GB-second; $0.0000166667 in "
    "cloudchipr.com's us-east-1 table",
    short="GB-s",
)
LAMBDA_REQUEST = Price(
    Decimal("0.20") / 1_000_000, "invocation",
    "AWS Lambda pricing (aws.amazon.com/lambda/pricing), requests",
    "AWS whitepaper 'How AWS Pricing Works', Lambda: $0.20 per 1 million requests",
    short="invocations",
)
DYNAMODB_WRITE_REQUEST_UNIT = Price(
    Decimal("0.625") / 1_000_000, "write request unit (on-demand, Standard table class)",
    "Amazon DynamoDB pricing for on-demand capacity (aws.amazon.com/dynamodb/pricing/on-demand)",
    "figure not in the stored text of the AWS page; $0.625 per million for US East after the "
    "November 2024 on-demand price cut (airbyte.com DynamoDB pricing guide)",
    short="WRU",
)
DYNAMODB_READ_REQUEST_UNIT = Price(
    Decimal("0.125") / 1_000_000, "read request unit (on-demand, Standard table class)",
    "Amazon DynamoDB pricing for on-demand capacity (aws.amazon.com/dynamodb/pricing/on-demand)",
    "figure not in the stored text of the AWS page; $0.125 per million for US East (airbyte.com)",
    short="RRU",
)
# Provisioned capacity (auto scaled): billed per unit-hour provisioned, used or not. A unit is one
# write (1 KB) or one strongly consistent read (4 KB) per second: 3,600 request units an hour at 100 %.
DYNAMODB_WRITE_CAPACITY_UNIT_HOUR = Price(
    Decimal("0.00065"), "write capacity unit-hour (provisioned, Standard table class)",
    "Amazon DynamoDB pricing for provisioned capacity (https://aws.amazon.com/dynamodb/pricing/provisioned/)",
    "figure not in the stored text of the AWS page (its price table renders with JavaScript); "
    "$0.00065 per WCU-hour for US East in a 2025 pricing breakdown (linkedin.com, 'Amazon DynamoDB Pricing "
    "Explained'), and $0.0065 per 10 WCU-hours in the us-east-1 table of the dynamo-autoscale gem "
    "(rubydoc.info): the provisioned price did not change with the November 2024 on-demand cut",
    short="WCU-hours",
)
DYNAMODB_READ_CAPACITY_UNIT_HOUR = Price(
    Decimal("0.00013"), "read capacity unit-hour (provisioned, Standard table class)",
    "Amazon DynamoDB pricing for provisioned capacity (https://aws.amazon.com/dynamodb/pricing/provisioned/)",
    "figure not in the stored text of the AWS page; $0.00013 per RCU-hour for US East (linkedin.com, as "
    "above), $0.0065 per 50 RCU-hours (dynamo-autoscale gem)",
    short="RCU-hours",
)
DYNAMODB_STORAGE_GB_MONTH = Price(
    Decimal("0.25"), "GB-month stored (Standard table class, after the free 25 GB)",
    "Amazon DynamoDB pricing (aws.amazon.com/dynamodb/pricing), data storage",
    "AWS page: 'first 25 GB consumed per month is free, and prices start from $0.25 per GB-month'",
    short="GB-months",
)
# Point-in-time recovery is on for every table (infra/constructs/tables.py) and is billed on the
# table's size: the events the 34 days keep.
DYNAMODB_PITR_GB_MONTH = Price(
    Decimal("0.20"), "GB-month of continuous backup (point-in-time recovery)",
    "Amazon DynamoDB pricing for on-demand capacity, continuous backups (PITR)",
    "NOT CONFIRMED: no stored page gave the figure; $0.20 is the list price as last known",
    short="GB-months",
)
# Lambda's event source mappings read the streams: AWS does not charge those GetRecords calls.
DYNAMODB_STREAM_READ_BY_LAMBDA = Price(
    Decimal(0), "streams read request unit (GetRecords) made by a Lambda trigger",
    "Amazon DynamoDB pricing for on-demand capacity, DynamoDB Streams",
    "AWS: 'You are not charged for GetRecords API calls invoked by AWS Lambda as part of DynamoDB "
    "triggers' (quoted at notes.paulswail.com); DynamoDB developer guide, 'Evaluate your DynamoDB "
    "streams usage': 'Read requests made by Lambda-based consumers of DynamoDB Streams are free'",
    short="GetRecords",
)
SNS_PUBLISH = Price(
    Decimal("0.50") / 1_000_000, "publish to a standard topic (per 64 KB chunk)",
    "Amazon SNS pricing (aws.amazon.com/sns/pricing), standard topics",
    "figure not in the stored text of the AWS page; $0.50 per million publishes "
    "(factualminds.com, awsnegotiations.com); deliveries to SQS are not charged by SNS",
    short="publishes",
)
# Step Functions runs once per cycle close, per due period: no cost per event, so no price here.

PRICES = {
    "API Gateway HTTP API request": API_GATEWAY_HTTP_REQUEST,
    "Lambda GB-second (x86)": LAMBDA_GB_SECOND,
    "Lambda request": LAMBDA_REQUEST,
    "DynamoDB write request unit": DYNAMODB_WRITE_REQUEST_UNIT,
    "DynamoDB read request unit": DYNAMODB_READ_REQUEST_UNIT,
    "DynamoDB write capacity unit-hour": DYNAMODB_WRITE_CAPACITY_UNIT_HOUR,
    "DynamoDB read capacity unit-hour": DYNAMODB_READ_CAPACITY_UNIT_HOUR,
    "DynamoDB storage GB-month": DYNAMODB_STORAGE_GB_MONTH,
    "DynamoDB PITR GB-month": DYNAMODB_PITR_GB_MONTH,
    "DynamoDB Streams read by Lambda": DYNAMODB_STREAM_READ_BY_LAMBDA,
    "SNS publish": SNS_PUBLISH,
}


@dataclass(frozen=True)
class Quota:
    value: int
    unit: str
    source: str


# Default quotas, same region: what the capacity plan compares its rates with.
API_GATEWAY_ACCOUNT_RPS = Quota(
    10_000, "requests/s per account and region, across HTTP, REST and WebSocket APIs (burst 5,000); can be raised",
    "Amazon API Gateway developer guide, 'Amazon API Gateway quotas'",
)
DYNAMODB_TABLE_WRU_PER_S = Quota(
    40_000, "write request units/s per on-demand table (40,000 read request units/s too); can be raised",
    "Amazon DynamoDB developer guide, 'Quotas in Amazon DynamoDB', throughput default quotas",
)
DYNAMODB_TABLE_RRU_PER_S = Quota(
    40_000, "read request units/s per on-demand table; can be raised",
    "Amazon DynamoDB developer guide, 'Quotas in Amazon DynamoDB', throughput default quotas",
)
# Provisioned tables: the same 40,000 per table (reads and writes each, a table and each of its
# indexes), and the sum over every provisioned table and index of the account in the region.
DYNAMODB_TABLE_WCU = Quota(
    40_000, "provisioned write capacity units per table or index (40,000 read capacity units too); can be raised",
    "Amazon DynamoDB developer guide, 'Quotas in Amazon DynamoDB', throughput default quotas "
    "(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)",
)
DYNAMODB_ACCOUNT_WCU = Quota(
    80_000, "provisioned write capacity units per account and region, all tables and indexes together "
    "(80,000 read capacity units too); can be raised",
    "Amazon DynamoDB developer guide, 'Quotas in Amazon DynamoDB', throughput default quotas: 'Per account "
    "per Region ... 80,000 read capacity units and 80,000 write capacity units' (provisioned only)",
)
DYNAMODB_ACCOUNT_RCU = Quota(
    80_000, "provisioned read capacity units per account and region, all tables and indexes together",
    "Amazon DynamoDB developer guide, 'Quotas in Amazon DynamoDB', throughput default quotas",
)
DYNAMODB_PARTITION_WCU = Quota(
    1_000, "write units/s per partition (hard)",
    "Amazon DynamoDB developer guide, warm throughput and hot partitions: each partition is limited "
    "to 1,000 write units and 3,000 read units per second",
)
DYNAMODB_PARTITION_RCU = Quota(
    3_000, "read units/s per partition (hard)",
    "Amazon DynamoDB developer guide, warm throughput and hot partitions",
)
LAMBDA_CONCURRENCY = Quota(
    1_000, "concurrent executions per account and region; can be raised to tens of thousands",
    "AWS Lambda developer guide, 'Lambda quotas', compute and storage",
)
