"""The README names tests as evidence (the table of weaknesses of other integrations): each one it
names must exist, so that a renamed or removed test cannot leave the README pointing at nothing. Its
Configuration table names every variable the enrich and remediate functions read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from vtriage.config.enrich import EnrichSettings
from vtriage.config.remediate import RemediateSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_the_readme_names_exists() -> None:
    # Given the tests the README names, as path::function
    named = TEST_REFERENCE.findall((PROJECT_ROOT / "README.md").read_text())
    assert named, "the README names no test: has its evidence table moved?"

    # Then each file exists and defines the function
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (PROJECT_ROOT / path).is_file() or name not in _test_functions(PROJECT_ROOT / path)
    ]
    assert missing == []


# What AWS or boto3 set, not a deployment: never in the table.
_SET_BY_AWS = {"AWS_REGION", "AWS_ENDPOINT_URL"}


def _configuration_table() -> set[str]:
    """The variables the README's Configuration table names, `CACHE_TTL_{A,B}_HOURS` spelled out."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start : readme.index("\n\n**", start)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named: set[str] = set()
    for row in rows:
        for variable in re.findall(r"`([A-Z][A-Z0-9_]*(?:\{[A-Z,]+\}[A-Z0-9_]*)?)`", row.split("|")[1]):
            braced = re.fullmatch(r"(.*)\{(.*)\}(.*)", variable)
            if braced:
                prefix, options, suffix = braced.groups()
                named |= {prefix + option + suffix for option in options.split(",")}
            else:
                named.add(variable)
    return named


@pytest.mark.parametrize("settings", [EnrichSettings, RemediateSettings], ids=lambda cls: cls.__name__)
def test_the_configuration_table_names_every_setting_of_the_enrich_and_remediate_functions(
    settings: type[BaseModel],
) -> None:
    # Given the variables a function's settings read (vtriage/config/), and the README's table
    variables = {field.alias for field in settings.model_fields.values() if field.alias} - _SET_BY_AWS

    # Then each has its row: a user deploying for an organisation finds MEMBER_ACCOUNT_IDS and the others
    missing = variables - _configuration_table()
    assert missing == set()
