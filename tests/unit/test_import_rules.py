"""The import rules import-linter cannot express. The others are contracts in pyproject.toml, which
`make lint` checks (lint-imports); CONTRIBUTING.md explains them all."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "vtriage"

# Lambda's event-source plumbing: powertools' batch utility, its event types (SQS records among them) and
# the Lambda context's type. import-linter sees an external package whole (aws_lambda_powertools), so it
# cannot forbid these and allow the Logger.
LAMBDA_RUNTIME = (
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes",
    "aws_lambda_powertools.utilities.typing",
)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name the file imports, anywhere in it (functions and TYPE_CHECKING blocks
    included); `from a import b` counts as both `a` and `a.b`, since b may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_lambda_runtime(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in LAMBDA_RUNTIME)


def domain_modules() -> list[Path]:
    """The layer package's modules outside adapters/ and composition/."""
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in {"adapters", "composition"}
    ]


def test_the_domain_imports_no_lambda_event_source_types() -> None:
    # Given every domain module of the layer package
    modules = domain_modules()

    # When the Lambda runtime modules each imports are collected
    imports = {str(path.relative_to(PACKAGE)): imported_modules(path) for path in modules}
    found = {
        path: sorted(name for name in names if is_lambda_runtime(name))
        for path, names in imports.items()
        if any(is_lambda_runtime(name) for name in names)
    }

    # Then none imports any: Lambda's batch is handled at the edge (vtriage.composition.sqs_batch)
    assert len(modules) > 20
    assert found == {}, (
        f"domain modules importing powertools' batch utility, event types or Lambda context: {found}. "
        "Handle records at the edge (the handler or a composition module beside it)"
    )


def test_the_check_sees_an_import_inside_a_function_and_in_both_import_forms(tmp_path: Path) -> None:
    # Given a module importing the batch utility in a function, and SQS types with `from ... import`
    module = tmp_path / "module.py"
    module.write_text(
        "from aws_lambda_powertools.utilities import data_classes\n"
        "def handle():\n"
        "    import aws_lambda_powertools.utilities.batch\n"
        "from aws_lambda_powertools import Logger\n"
    )

    # Then both count as the Lambda runtime, and the Logger does not
    runtime = sorted(name for name in imported_modules(module) if is_lambda_runtime(name))
    assert runtime == [
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes",
    ]


def test_the_edge_that_handles_lambdas_batch_is_seen_by_the_check() -> None:
    # Given the module at the edge that turns Lambda's SQS batch into the domain's records
    edge = PACKAGE / "composition" / "sqs_batch.py"

    # Then it imports the batch utility, the SQS record type and the Lambda context: the check would
    # refuse any of them in a domain module
    runtime = {name for name in imported_modules(edge) if is_lambda_runtime(name)}
    assert {
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes.sqs_event",
        "aws_lambda_powertools.utilities.typing",
    } <= runtime


def contracts() -> dict[str, Any]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in settings["contracts"]}


def test_adapters_are_forbidden_every_domain_module_but_the_models_layer() -> None:
    # Given the layers contract (every module of vtriage placed) and the adapters' contract
    layers: list[str] = contracts()["layers"]["layers"]
    forbidden = set(contracts()["adapters-import-models-only"]["forbidden_modules"])

    # When the modules between the adapters and the models layer are read off the layers
    steps_and_rules = {f"vtriage.{name.strip()}" for layer in layers[2:-1] for name in layer.split(":")}

    # Then the adapters' contract forbids exactly those: a module added to either layer is forbidden too
    assert layers[:2] == ["composition", "adapters"]
    assert forbidden == steps_and_rules


def test_the_operator_commands_are_forbidden_every_local_runner_module_but_the_two_they_share() -> None:
    # Given the modules of the local runner's package and the operator commands' contract
    local_modules = {
        f"vtriage_local.{path.stem}"
        for path in (ROOT / "local" / "vtriage_local").glob("*.py")
        if path.stem != "__init__"
    }
    forbidden = set(contracts()["operator-commands-without-the-moto-stack"]["forbidden_modules"])

    # Then every one of them is forbidden to vtriage_ops but the reader `send` shares with `run` and the
    # case table `cases` shares with `run`'s report: a module added to the local runner is forbidden too,
    # and the moto stack with it
    shared = {"vtriage_local.alert_files", "vtriage_local.terminal"}
    assert shared <= local_modules
    assert {"moto", "vtriage_local.stack"} <= forbidden
    assert {name for name in forbidden if name.startswith("vtriage_local.")} == local_modules - shared
