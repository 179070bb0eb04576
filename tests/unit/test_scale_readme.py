"""The README's "Scale and cost" tables are the generated ones: the settings from infra/settings.py,
and the units, plan and cost from the run the README quotes (infra/bench/readme_units.json)."""

from pathlib import Path

from infra.bench import plan
from infra.bench.units import Units
from infra.settings import settings_table

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_settings_table_is_the_settings():
    assert settings_table() in README, "regenerate the README's settings table: python -m infra.settings"


def test_the_readme_plan_and_cost_are_generated_from_the_quoted_units():
    units = Units.from_json((ROOT / "infra" / "bench" / "readme_units.json").read_text())
    assert plan.markdown(units) in README, (
        "regenerate the README's Scale and cost tables: tally capacity --units infra/bench/readme_units.json --markdown"
    )
