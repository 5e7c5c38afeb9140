"""The layering rules, checked on the source: only adapters and the composition roots touch AWS, and
each function's composition root imports only the adapters that function uses (its cold start pays
for every module it imports)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "vtriage"
AWS_MODULES = ("boto3", "botocore")


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_only_adapters_and_composition_roots_import_the_aws_sdk() -> None:
    # Given every module of the layer package
    touching = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] in AWS_MODULES for name in _imported(path))
    }

    # Then the AWS SDK is imported only under adapters/ and composition/
    assert touching
    assert {path for path in touching if not path.startswith(("adapters/", "composition/"))} == set()


def _loaded_by(module: str) -> set[str]:
    script = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vtriage.'))))"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(output.stdout))


def test_the_enrich_function_loads_no_remediation_approval_or_ticket_adapter() -> None:
    # When the enrich function's composition root is imported in a fresh interpreter
    loaded = _loaded_by("vtriage.composition.enrich")

    # Then it loaded its own adapters and none of the other functions', nor their domain modules
    assert {"vtriage.adapters.dynamodb", "vtriage.adapters.quota", "vtriage.adapters.stepfunctions"} <= loaded
    others = {
        "ec2",
        "iam",
        "waf",
        "nacl",
        "s3",
        "dns_firewall",
        "guardrails",
        "jira",
        "servicenow",
        "webhook",
        "sns",
    }
    assert loaded & {f"vtriage.adapters.{name}" for name in others} == set()
    assert loaded & {"vtriage.remediate", "vtriage.approval", "vtriage.ticket"} == set()


def test_the_ticket_function_loads_no_actuator() -> None:
    # When the ticket function's composition root is imported
    loaded = _loaded_by("vtriage.composition.ticket")

    # Then the ticket providers are there and no actuator is
    assert {"vtriage.adapters.jira", "vtriage.adapters.servicenow", "vtriage.adapters.webhook"} <= loaded
    assert loaded & {"vtriage.adapters.ec2", "vtriage.adapters.iam", "vtriage.adapters.waf"} == set()
