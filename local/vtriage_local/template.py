"""Reads `template.yaml` so that the local stack and the tests are built from it, never beside it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vtriage.config import https_url_problem

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
# The member role's template: deployed in each member account (a StackSet in the cloud).
MEMBER_ROLE_TEMPLATE_PATH = PROJECT_ROOT / "member-role.yaml"

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
    runtime: str


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
            runtime=str(properties.get("Runtime", globals_.get("Runtime", ""))),
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


# A value CloudFormation takes for a parameter of Type Number: an integer or a decimal.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Every Number parameter of vtriage's template is a count (a quota, a cap, seconds, days), read by its
# functions as an integer: CloudFormation takes 1.5, and the function refuses it at start-up, so a local
# run refuses it first. tests/template holds every Number parameter's default and bounds to whole numbers.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def parameter_problems(
    template: dict[str, Any], values: dict[str, str], *, loopback_http: bool = False
) -> list[str]:
    """What CloudFormation would refuse in these parameter values, one problem a parameter, as it checks
    them before it deploys anything: for `Type: Number`, a value that is no number or lies outside
    `MinValue`..`MaxValue`; a value shorter than `MinLength` or longer than `MaxLength`; one its
    `AllowedPattern` does not match whole; one not among its `AllowedValues`. Each problem names the
    parameter as a person typed it and the variable the functions read it as (`parameter_label`), the
    value, then what it must be: the parameter's ConstraintDescription, as CloudFormation says it, or
    the constraint itself. A fraction for a Number parameter, which CloudFormation takes, is refused too:
    each is a count the functions read as an integer (`_WHOLE_NUMBER`). `loopback_http`: an http:// URL
    on loopback passes a pattern that takes the same URL over https:// (a local run's stand-in ticket
    provider, which the functions' settings accept on loopback alone)."""
    problems = []
    declared = template.get("Parameters", {})
    for name, value in values.items():
        problem = _constraint_problem(declared.get(name, {}), value, loopback_http=loopback_http)
        if problem is not None:
            problems.append(f"{parameter_label(template, name)}: {value!r} {problem}")
    return problems


def _out_of_bounds(
    measured: float, low: Any, high: Any, *, between: str, at_least: str, at_most: str
) -> str | None:
    """What a value measured outside [low, high] must be (either bound may be None), in the words given
    for both bounds or for the one there is; None when it is within them."""
    if (low is None or measured >= float(low)) and (high is None or measured <= float(high)):
        return None
    if low is not None and high is not None:
        return between.format(low=low, high=high)
    return at_least.format(low=low) if low is not None else at_most.format(high=high)


def _constraint_problem(spec: dict[str, Any], value: str, *, loopback_http: bool) -> str | None:
    """What `value` must be for the parameter `spec`, when a constraint refuses it; else None."""
    if spec.get("Type") == "Number":
        if _NUMBER.fullmatch(value) is None:
            return "must be a number (the parameter's Type is Number)"
        if _WHOLE_NUMBER.fullmatch(value) is None:
            return "must be a whole number (the functions read it as one: a count, seconds or days)"
        problem = _out_of_bounds(
            float(value),
            spec.get("MinValue"),
            spec.get("MaxValue"),
            between="must be a number from {low} to {high}",
            at_least="must be a number of at least {low}",
            at_most="must be a number of at most {high}",
        )
        if problem is not None:
            return problem
    problem = _out_of_bounds(
        len(value),
        spec.get("MinLength"),
        spec.get("MaxLength"),
        between="must be {low} to {high} characters long",
        at_least="must be at least {low} characters long",
        at_most="must be at most {high} characters long",
    )
    if problem is not None:
        return problem
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not _matches(str(pattern), value, loopback_http=loopback_http):
        return str(spec.get("ConstraintDescription") or f"must match {pattern}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        return f"must be one of {', '.join(map(str, allowed))}"
    return None


def _matches(pattern: str, value: str, *, loopback_http: bool) -> bool:
    if re.fullmatch(pattern, value) is not None:
        return True
    on_loopback = value.startswith("http://") and https_url_problem(value) is None
    return (
        loopback_http
        and on_loopback
        and re.fullmatch(pattern, "https://" + value[len("http://") :]) is not None
    )


def parameter_label(template: dict[str, Any], name: str) -> str:
    """A parameter as an error names it: `MemberAccountIds (MEMBER_ACCOUNT_IDS)`, the parameter a person
    typed and the environment variable(s) the template's functions read it as (the same words the
    functions' settings use at start-up); the parameter alone when no function reads it directly."""
    variables = sorted(
        {
            variable
            for spec in functions(template).values()
            for variable, value in spec.environment.items()
            if value == {"Ref": name}
        }
    )
    return f"{name} ({', '.join(variables)})" if variables else name


# What `!Ref AWS::NoValue` leaves: the list item or the mapping key holding it is removed.
_NO_VALUE = object()


@dataclass(frozen=True)
class Intrinsics:
    """Evaluates a template's intrinsic functions with one stack's names: `ref` gives what `!Ref` gives
    (a parameter, a pseudo parameter, a resource's physical id) and `get_att` an attribute."""

    template: dict[str, Any]
    parameters: dict[str, str]
    ref: Callable[[str], str]
    get_att: Callable[[str, str], str]

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic function evaluated."""
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return _NO_VALUE if value["Ref"] == "AWS::NoValue" else self.ref(value["Ref"])
        if set(value) == {"Fn::If"}:
            return self._resolve(choose_if(value, self.template, self.parameters))
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
            return self.get_att(logical_id, attribute)
        if set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"])
        if set(value) == {"Fn::Join"}:
            separator, items = value["Fn::Join"]
            return str(separator).join(str(item) for item in self._resolve(items))
        if set(value) == {"Fn::Split"}:
            separator, text = value["Fn::Split"]
            return str(self._resolve(text)).split(str(separator))
        if set(value) == {"Fn::Select"}:
            index, items = value["Fn::Select"]
            return self._resolve(items)[int(self._resolve(index))]
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _sub(self, spec: Any) -> str:
        text, variables = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])
        result = str(text)
        for name, replacement in variables.items():
            result = result.replace("${" + name + "}", str(self._resolve(replacement)))
        while "${" in result:
            start = result.index("${")
            end = result.index("}", start)
            name = result[start + 2 : end]
            logical_id, _, attribute = name.partition(".")
            replacement = self.get_att(logical_id, attribute) if attribute else self.ref(logical_id)
            result = result[:start] + replacement + result[end + 1 :]
        return result
