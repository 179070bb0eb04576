"""The README's commands: CI runs exactly its test command, and every curl in it sends JSON and ends
its output with a newline (so that outputs pasted one after another do not run together)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _commands(text: str) -> list[str]:
    """The shell commands of the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [command for block in blocks for command in block.replace("\\\n", " ").splitlines()]


def test_ci_runs_exactly_the_readmes_test_command():
    (command,) = [c for c in _commands(README) if c.endswith("pytest -n 2")]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == command


def test_every_curl_in_the_readme_sends_json_and_ends_its_output_with_a_newline():
    curls = [c[c.index("curl ") :] for c in _commands(README) if "curl " in c]
    assert len(curls) >= 5
    for curl in curls:
        assert "-H 'Content-Type: application/json'" in curl, curl
        assert "-w '\\n'" in curl or "; echo" in curl, curl
