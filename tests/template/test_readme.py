"""The README names tests as evidence (the table of weaknesses of other integrations): each one it
names must exist, so that a renamed or removed test cannot leave the README pointing at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
