"""Which of metronome-sdk's routes Tally serves, measured against the installed SDK.

The SDK's resource modules name every route they call (`self._post("/v1/...")`, list pages with
their method, and `path_template(...)` for ids in the path). Routes of Metronome's plan era (plans,
credit grants, plan charges) are out of scope; every other route is a contract-era route, and the
README's route table says for each whether Tally serves it (the OpenAPI document's operations).

    python -m infra.api_coverage          # prints the README's table
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Metronome's legacy plan-era routes (plans, credit grants, charges added to a plan).
PLAN_ERA = re.compile(r"^/v1/(plans|planDetails|credits/|customers/\{\}/(plans|addCharge))")
# Contract-era routes not served yet, and the issue that brings each.
NOT_YET: dict[tuple[str, str], str] = {}
_CALL = re.compile(r'self\._(get|post|put|delete|patch)(_api_list)?\(\s*(?:path_template\(\s*)?f?"([^"]+)"')


@dataclass(frozen=True, order=True)
class Route:
    path: str
    method: str

    @property
    def plan_era(self) -> bool:
        return bool(PLAN_ERA.match(self.path))


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def sdk_routes() -> set[Route]:
    import metronome

    routes = set()
    for module in (Path(metronome.__file__).parent / "resources").rglob("*.py"):
        text = module.read_text()
        for call in _CALL.finditer(text):
            method, paged, path = call.groups()
            if paged:  # a list page says its method a few lines further on (GET unless it says otherwise)
                named = re.search(r'method="(\w+)"', text[call.end():call.end() + 1500].split("def ")[0])
                method = named.group(1) if named else "get"
            routes.add(Route(_normal(path), method.upper()))
    return routes


def served_routes() -> set[Route]:
    """The operations the OpenAPI document is generated from (tally.api.openapi.OPERATIONS, which
    its own test keeps equal to the routes served): read from the list rather than the committed
    openapi.json, so a new route counts before the document is next regenerated."""
    from tally.api.openapi import OPERATIONS

    return {Route(_normal(op.path), op.method.upper()) for op in OPERATIONS}


def coverage_table() -> str:
    version = metadata.version("metronome-sdk")
    contract_era = sorted(r for r in sdk_routes() if not r.plan_era)
    served = served_routes()
    count = sum(r in served for r in contract_era)
    lines = [f"Measured against metronome-sdk {version}: Tally serves {count} of its {len(contract_era)} "
             "contract-era routes (plan-era routes, for plans, credit grants and plan charges, are out of scope).",
             "", "| Route | Served |", "|---|---|"]
    for route in contract_era:
        shown = route.path.replace("{}", "{id}")
        status = "yes" if route in served else f"not yet: {NOT_YET.get((route.method, route.path), 'not built')}"
        lines.append(f"| `{route.method} {shown}` | {status} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(coverage_table())
