"""CONTRIBUTING.md's checklists held to the code: every response action type is in each place the
checklist names that a test can see (the planner, a default playbook or a reason, an actuator and its
rollback, its functional tests, its IAM statements and the IAM scenario, its README row), and every file
the checklists name exists."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_alert
from vtriage.composition.remediate import actuators, actuators_outside_aws
from vtriage.config.remediate import RemediateSettings
from vtriage.models import ActionType, IocOutcome, IocType, Resource, ResourceType, Verdict
from vtriage.playbook import ActionSpec, Playbook, Playbooks, default_playbooks, plan_actions
from vtriage.ports import ResponseActuator
from vtriage.remediate import _NEVER_UNDONE
from vtriage_local.template import functions, load_template

ROOT = Path(__file__).resolve().parents[2]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
CHECKLISTS = ("Adding a response action type", "Adding a detector source", "Adding a ticket provider")
ACTIONS_HEADING = "### Response actions"
BACKTICKED = re.compile(r"`([^`\n]+)`")
FENCED = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)

# A deployment with every actuator's resource configured.
EVERY_RESOURCE_CONFIGURED = {
    "AWS_REGION": "us-east-1",
    "CASES_TABLE_NAME": "vtriage-cases",
    "OWN_ACCOUNT_ID": "123456789012",
    "WAF_IP_SET_NAME": "vtriage-blocked",
    "WAF_IP_SET_ID": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    "NACL_RULE_MIN": "1",
    "NACL_RULE_MAX": "10",
    "QUARANTINE_BUCKET": "vtriage-quarantine-123456789012",
    "QUARANTINE_SOURCE_BUCKETS": "uploads",
    "DNS_FIREWALL_DOMAIN_LIST_ID": "rslvr-fdl-0123456789abcdef",
    "USER_CONTAINMENT_POLICY_ARN": "arn:aws:iam::123456789012:policy/vtriage-user-containment",
    "FALCON_API_SECRET_NAME": "vtriage/falcon-api-client",
    "FALCON_CID": "92012896127c4a948236ba7601b886b0",
}

# An alert that names a resource of every type and a malicious IOC of every type: anything an action
# may act on.
INSTANCE = Resource(type=ResourceType.INSTANCE, id="i-0abc1234def567890", vpc_id="vpc-0a1b2c3d")
KEY = Resource(type=ResourceType.ACCESS_KEY, id="AKIAIOSFODNN7EXAMPLE", user_name="ci-deployer")
OBJECT = Resource(type=ResourceType.S3_OBJECT, id="uploads/invoice.exe", bucket="uploads", key="invoice.exe")
HOST = Resource(type=ResourceType.FALCON_HOST, id="2ce412d17b334ad4adc8c1c54dbfec4b")
ALERT = make_alert(type="Backdoor:EC2/C&CActivity.B", resources=(INSTANCE, KEY, OBJECT, HOST))
IOCS = [
    IocOutcome(type=ioc_type, value=value, found_at="service.action", verdict=Verdict.MALICIOUS)
    for ioc_type, value in (
        (IocType.IP, "23.129.64.215"),
        (IocType.DOMAIN, "tawuhoju.com"),
        (IocType.URL, "http://soclosebutyetqq.com/69.exe"),
        (IocType.FILE, "4bc00f7d638e042da764e8648c03c0db46700599dd4f08d117e3e9e8b538519b"),
    )
]


@cache
def readme_actions() -> dict[str, dict[str, str]]:
    """The README's "Response actions" table: action type -> column -> cell."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ACTIONS_HEADING in text, f"README.md has no {ACTIONS_HEADING!r} section"
    section = text.split(ACTIONS_HEADING, 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {}
    for row in rows[2:]:
        cells = dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
        action = cells["action"].strip("`")
        assert action not in table, f"two README rows for {action}"
        table[action] = cells
    return table


def row(action: ActionType) -> dict[str, str]:
    rows = readme_actions()
    assert action.value in rows, f"README.md's {ACTIONS_HEADING!r} has no row for {action.value}"
    return rows[action.value]


@cache
def configured_actuators() -> Mapping[ActionType, ResponseActuator]:
    """Every actuator the remediate function builds: those of a place in AWS and those acting outside
    AWS (a Falcon host's containment)."""
    settings = RemediateSettings.from_environ(EVERY_RESOURCE_CONFIGURED)
    return {**actuators(settings), **actuators_outside_aws(settings)}


@cache
def remediate_statements() -> dict[str, dict[str, Any]]:
    """Every statement of the remediate function's policies (conditional ones included), by Sid."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Sid" in node:
                found[str(node["Sid"])] = node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(functions(load_template())["RemediateFunction"].policies)
    return found


@cache
def action_types_in_functions(path: Path) -> frozenset[str]:
    """The `ActionType` members the functions of a test module (its tests and the helpers that build
    their actions) reference in their code: a mention in a comment, a docstring or a string does not
    count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        node.attr
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ActionType"
    )


def planned_types(playbooks: Playbooks) -> set[ActionType]:
    """The action types the playbooks plan on the alert that offers everything, with either IP block."""
    return {
        action.type
        for method in ("waf", "nacl")
        for action in plan_actions(ALERT, IOCS, playbooks, ip_block_method=method)
    }


# ---------------------------------------------------------------- the checklists themselves


def test_contributing_has_the_three_checklists() -> None:
    # Given CONTRIBUTING.md's headings
    headings = re.findall(r"^### (.+)$", CONTRIBUTING.read_text(encoding="utf-8"), re.MULTILINE)

    # Then the three checklists are there
    assert set(CHECKLISTS) <= set(headings)


def test_every_file_the_contributing_guide_names_exists() -> None:
    # Given every path CONTRIBUTING.md names (a `<name>` placeholder stands for any name)
    paths = [
        token
        for token in BACKTICKED.findall(FENCED.sub("", CONTRIBUTING.read_text(encoding="utf-8")))
        if " " not in token and re.search(r"/|\.(py|md|toml|yaml|json)$", token) and "::" not in token
    ]
    assert len(paths) > 40

    # Then each one is there: a file, a folder, or files matching its pattern
    def exists(token: str) -> bool:
        pattern = re.sub(r"<[^>]+>", "*", token)
        if "*" in pattern:
            return any(ROOT.glob(pattern))
        return (ROOT / token.rstrip("/")).exists()

    assert [token for token in paths if not exists(token)] == []


# ---------------------------------------------------------------- every action type in every place


def test_every_action_type_has_one_readme_row_and_every_row_is_an_action_type() -> None:
    # Given the README's response actions, Then they are exactly the action types
    assert set(readme_actions()) == {action.value for action in ActionType}


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_the_planner_can_target_every_action_type(action: ActionType) -> None:
    # Given a playbook planning only this action, on any malicious IOC
    playbooks = Playbooks(playbooks=(Playbook(name="only-this", actions=(ActionSpec(type=action),)),))

    # When it plans on an alert offering every resource and IOC type
    planned = [item for item in plan_actions(ALERT, IOCS, playbooks) if item.type is action]

    # Then the action finds something to act on (playbook.py knows what it targets)
    assert planned


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_every_action_type_is_planned_by_the_playbooks_its_row_names_or_says_why_none(
    action: ActionType,
) -> None:
    # Given the default playbook the README names for the action
    cell = row(action)["default playbook"]
    shipped = {playbook.name: playbook for playbook in default_playbooks().playbooks}
    named = [name for name in BACKTICKED.findall(cell) if name in shipped]

    if cell.startswith("none:"):
        # Then no shipped playbook plans it, and the row says why
        assert len(cell.removeprefix("none:").strip()) > 10
        assert action not in planned_types(default_playbooks())
    else:
        # Then each playbook named plans it, on its own
        assert named, f"{action}: name the default playbook that plans it, or write `none: <why>`"
        for name in named:
            assert action in planned_types(Playbooks(playbooks=(shipped[name],))), name


def test_the_remediate_function_has_an_actuator_for_every_action_type_once_configured() -> None:
    # When the remediate function's composition root builds its actuators with every resource configured
    built = configured_actuators()

    # Then every action type has one
    assert set(built) == set(ActionType)


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_every_actuator_writes_its_own_rollback_and_the_row_says_what_it_undoes(action: ActionType) -> None:
    # Given the action's actuator and its README row
    actuator = configured_actuators()[action]
    rollback = row(action)["rollback"]

    # Then the actuator's class defines its rollback, and the row says what it does or why it cannot
    assert "rollback" in vars(type(actuator))
    assert len(rollback) > 10
    # And "not reversible" is said exactly of the actions whose rollback never changes anything
    assert rollback.startswith("not reversible:") == (action in _NEVER_UNDONE)


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_every_action_type_is_exercised_by_the_actuator_functional_tests(action: ActionType) -> None:
    # Given the functional tests of the actuators: per service on moto, or per action type against a
    # loopback server answering as the vendor's API documents (an action outside AWS)
    functional = ROOT / "tests" / "functional"
    paths = [*functional.glob("test_actuators_*.py"), *functional.glob(f"test_{action.value}.py")]

    # Then a function of one of them names this action type in its code
    assert any(action.name in action_types_in_functions(path) for path in paths)


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_every_action_types_iam_statements_are_granted_to_the_remediate_function(action: ActionType) -> None:
    # Given the statements the README row names
    named = [
        token
        for token in BACKTICKED.findall(row(action)["IAM (`Sid`)"].replace("(`Sid`)", ""))
        if re.fullmatch(r"[A-Za-z0-9]+", token)
    ]

    # Then each one is an Allow of the remediate function's policies
    statements = remediate_statements()
    assert named
    assert {
        sid: statements[sid].get("Effect") if sid in statements else None for sid in named
    } == dict.fromkeys(named, "Allow")


@pytest.mark.parametrize("action", list(ActionType), ids=str)
def test_every_action_type_runs_in_the_iam_grants_scenario_or_its_row_says_why_not(
    action: ActionType,
) -> None:
    # Given the IAM scenario, which checks every call the handlers make against the deployed policies
    scenario = ROOT / "tests" / "functional" / "test_iam_grants.py"
    # And the README row's reason for leaving it out, if it gives one: "(<why>: not in `test_iam_grants`"
    reason = re.search(r"\(([^()]*): not in `test_iam_grants`", row(action)["IAM (`Sid`)"])

    # Then a function of the scenario names this action in its code, or the row says why it cannot
    assert action.name in action_types_in_functions(scenario) or (
        reason is not None and len(reason.group(1).strip()) > 10
    ), f"{action}: run it in test_iam_grants, or say in its README IAM cell (<why>: not in `test_iam_grants`)"
