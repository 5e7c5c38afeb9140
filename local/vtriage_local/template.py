"""Reads `template.yaml` so that the local stack and the tests are built from it, never beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Base64": "Fn::Base64",
    "Cidr": "Fn::Cidr",
    "ToJsonString": "Fn::ToJsonString",
}


class _CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short-form tags (`!Ref X`) as their long form."""


def _intrinsic(function: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if function == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {function: value}

    return construct


for _tag, _function in _SHORT_TAGS.items():
    _CloudFormationLoader.add_constructor(f"!{_tag}", _intrinsic(_function))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form."""
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(document, dict) or "Resources" not in document:
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function as the template declares it, with the Globals applied."""

    logical_id: str
    code_dir: Path
    handler_module: str
    handler_function: str
    environment: dict[str, Any]
    timeout: int
    policies: list[Any]


def functions(template: dict[str, Any], root: Path = PROJECT_ROOT) -> dict[str, FunctionSpec]:
    """Every `AWS::Serverless::Function` of the template, by logical id."""
    globals_ = template.get("Globals", {}).get("Function", {})
    global_env = globals_.get("Environment", {}).get("Variables", {})
    found: dict[str, FunctionSpec] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        module, function = str(properties.get("Handler", globals_.get("Handler", ""))).rsplit(".", 1)
        environment = {**global_env, **properties.get("Environment", {}).get("Variables", {})}
        found[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=root / str(properties["CodeUri"]),
            handler_module=module,
            handler_function=function,
            environment=environment,
            timeout=int(properties.get("Timeout", globals_.get("Timeout", 3))),
            policies=list(properties.get("Policies", [])),
        )
    return found


def condition_holds(template: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """Whether the template's condition `name` holds with these parameter values (the defaults where
    none is given), as CloudFormation evaluates it."""
    return _truth(template["Conditions"][name], template, _with_defaults(template, parameters))


def choose_if(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """The branch an `Fn::If` takes with these parameter values; any other value unchanged."""
    while isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        value = when_true if condition_holds(template, name, parameters) else when_false
    return value


def _with_defaults(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    declared = template.get("Parameters", {})
    return {name: str(spec.get("Default", "")) for name, spec in declared.items()} | parameters


def _truth(expression: Any, template: dict[str, Any], parameters: dict[str, str]) -> bool:
    ((function, argument),) = expression.items()
    if function == "Condition":
        return _truth(template["Conditions"][argument], template, parameters)
    if function == "Fn::Not":
        return not _truth(argument[0], template, parameters)
    if function == "Fn::And":
        return all(_truth(item, template, parameters) for item in argument)
    if function == "Fn::Or":
        return any(_truth(item, template, parameters) for item in argument)
    if function == "Fn::Equals":
        left, right = (_scalar(item, parameters) for item in argument)
        return left == right
    raise ValueError(f"condition function {function} is not evaluated locally")


def _scalar(value: Any, parameters: dict[str, str]) -> str:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameters[value["Ref"]]
    return str(value)
