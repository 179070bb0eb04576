"""Tally: usage-based billing on AWS serverless."""
