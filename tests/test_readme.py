"""The README states what is true: its model table is the registry's, its commands are the CLI's."""

import re
from pathlib import Path

from edge_sdk.converters import TARGETS

from edge_sdk.cli import models_markdown
from edge_sdk.models import get_model_card, list_models

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_model_table_matches_the_registry():
    table = README.split("<!-- models:begin -->")[1].split("<!-- models:end -->")[0].strip()
    expected = models_markdown([get_model_card(n) for n in list_models()])
    assert table == expected, "README model table is stale: regenerate it with `edge-sdk list --markdown`"


def test_every_offered_target_is_documented():
    for target in TARGETS:
        assert f"--target {target}" in README


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "<!-- ci:test -->" in ci and "<!-- ci:test -->" in README
    block = README.split("<!-- ci:test -->")[1]
    command = re.search(r"```bash\n(.+?)\n```", block, re.S).group(1)
    assert command.startswith("python3.11 -m venv") and "pip install torch==2.13.0" in command and command.endswith("pytest")
