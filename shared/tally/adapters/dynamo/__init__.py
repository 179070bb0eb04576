"""DynamoDB adapters. Items are written in the low-level attribute-value format: it is the
cheapest path through boto3 on the ingest and aggregate hot paths."""
