"""The README's route table is the one measured against the installed metronome-sdk, and every
contract-era route the SDK calls is served, except those named as not yet built and by which issue."""

from pathlib import Path

from infra import api_coverage

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_the_readme_route_table_is_the_measured_one():
    assert api_coverage.coverage_table() in README, "regenerate the README's route table: python -m infra.api_coverage"


def test_every_contract_era_route_is_served_but_those_named_not_yet():
    routes = {r for r in api_coverage.sdk_routes() if not r.plan_era}
    missing = {(r.method, r.path) for r in routes - api_coverage.served_routes()}
    assert missing == set(api_coverage.NOT_YET)


def test_the_sdk_scan_finds_routes_of_every_kind():
    routes = api_coverage.sdk_routes()
    assert api_coverage.Route("/v1/ingest", "POST") in routes
    assert api_coverage.Route("/v1/customers/{}/invoices/{}", "GET") in routes  # path_template with ids
    assert api_coverage.Route("/v1/contracts/list", "POST") in routes  # a list page sent as POST
    assert api_coverage.Route("/v1/customers", "GET") in routes  # a list page sent as GET
    assert api_coverage.Route("/v1/plans", "GET").plan_era and not api_coverage.Route("/v1/customers", "GET").plan_era
