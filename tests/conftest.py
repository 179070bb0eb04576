import os

# Deterministic, offline AWS settings for every test; nothing here may reach real AWS.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Tally")
os.environ.setdefault("POWERTOOLS_DEV", "false")
# The local stacks of the tests (each worker's, and those in processes of their own) synthesize the
# CDK app once between them, and again only when its sources change (infra/local/runtime.py).
os.environ.setdefault("TALLY_SYNTH_CACHE", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build", "synth"))


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
LONG_FIRST = (
    "tests/system/test_exactly_once_http.py",
    "tests/system/test_bench_smoke.py",
    "tests/service/test_api_fuzz.py",
)


def _run_order(item) -> tuple[int, int]:
    path = item.nodeid.split("::", 1)[0]
    if path in LONG_FIRST:
        return 0, LONG_FIRST.index(path)
    return _group(item, path), 0


def _group(item, path: str) -> int:
    return 2 if path.startswith("tests/unit/") else 1


def pytest_collection_modifyitems(config, items):
    """Long tests first, then infra, service and system tests, then the pure ones, which keep both
    workers busy to the end (a stable sort: each group keeps its order). pytest-xdist's load
    scheduling hands tests out in this order."""
    items.sort(key=_run_order)
