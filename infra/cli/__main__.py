"""`python -m infra.cli ...` runs the `tally` command."""

import os

from infra.cli import app

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
app()
