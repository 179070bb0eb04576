import os

# Deterministic, offline AWS settings for every test; nothing here may reach real AWS.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Tally")
os.environ.setdefault("POWERTOOLS_DEV", "false")


def pytest_configure(config):
    """moto with less work per DynamoDB request and the same answers (infra/local/moto_speed.py),
    as the local stack runs it."""
    from infra.local import moto_speed

    moto_speed.install()


def examples(every_run: int) -> int:
    """Hypothesis examples of a property test that runs on moto (each example costs tenths of a
    second): `every_run` in the suite; ten times as many with TALLY_DEEP=1."""
    return every_run * 10 if os.environ.get("TALLY_DEEP") == "1" else every_run


# Files whose one test, or whose many tests together, take a minute or so: started first, so that
# the other worker is never left idle while one of them runs at the end.
LONG_FIRST = ("tests/system/test_bench_smoke.py", "tests/service/test_api_fuzz.py")


def _run_order(item) -> tuple[int, int]:
    path = item.nodeid.split("::", 1)[0]
    if path in LONG_FIRST:
        return 0, LONG_FIRST.index(path)
    return _group(item, path), 0


def _group(item, path: str) -> int:
    if item.get_closest_marker("volume") is not None:
        # Volume tests leave tens of thousands of events behind, and creating a metric starts a
        # backfill job that scans the whole events table (services/backfill.py): they come after
        # every other test of the local stack, and before the pure tests, which keep the other
        # worker busy meanwhile (never left idle while one of them ends the run).
        return 2
    return 3 if path.startswith("tests/unit/") else 1


def pytest_collection_modifyitems(config, items):
    """Long tests first, then infra, service and system tests, then volume ones, then the pure
    ones (a stable sort: each group keeps its order). pytest-xdist's load scheduling hands tests
    out in this order."""
    items.sort(key=_run_order)
