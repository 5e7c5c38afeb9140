"""Host containment as template.yaml deploys it: the remediate function may read the Falcon API client's
secret only when both the secret and the deployment's own Falcon CID are given, and then only that
secret; the enrich and remediate functions are told the same CID."""

from __future__ import annotations

import re
from typing import Any

import pytest

from vtriage.config.enrich import EnrichSettings
from vtriage.config.remediate import RemediateSettings
from vtriage.errors import ConfigurationError
from vtriage_local.template import TEMPLATE_PATH, condition_holds, load_template

SECRET = "vtriage/falcon-api-client"
CID = "92012896127C4A948236BA7601B886B0-4E"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def remediate_statement(template: dict[str, Any], sid: str) -> Any:
    """The remediate function's statement `sid`, as the template writes it (within its Fn::If)."""
    for entry in template["Resources"]["RemediateFunction"]["Properties"]["Policies"][0]["Statement"]:
        granted = entry["Fn::If"][1] if "Fn::If" in entry else entry
        if isinstance(granted, dict) and granted.get("Sid") == sid:
            return entry
    raise AssertionError(f"RemediateFunction has no statement {sid}")


def test_the_remediate_function_reads_the_falcon_secret_only_once_the_tenant_is_given_too(
    template: dict[str, Any],
) -> None:
    # Given the statement that lets the remediate function read the API client's credentials
    statement = remediate_statement(template, "ReadFalconApiClientForContainment")

    # Then it exists only under HasFalconContainment, which needs the secret and the CID both
    condition, granted, otherwise = statement["Fn::If"]
    assert condition == "HasFalconContainment"
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert not condition_holds(template, condition, {})
    assert not condition_holds(template, condition, {"FalconApiSecretName": SECRET})
    assert not condition_holds(template, condition, {"FalconCid": CID})
    assert condition_holds(template, condition, {"FalconApiSecretName": SECRET, "FalconCid": CID})
    # And it reads that one secret, nothing else
    assert granted["Action"] == "secretsmanager:GetSecretValue"
    assert granted["Resource"]["Fn::Sub"].endswith(":secret:${FalconApiSecretName}-??????")


def test_the_enrich_and_remediate_functions_are_told_the_same_tenant_and_the_remediate_one_its_client(
    template: dict[str, Any],
) -> None:
    # Given the two functions' environments
    resources = template["Resources"]
    enrich = resources["EnrichFunction"]["Properties"]["Environment"]["Variables"]
    remediate = resources["RemediateFunction"]["Properties"]["Environment"]["Variables"]

    # Then both read FalconCid, and the remediate function the poller's API client and cloud (it reads the
    # secret only with a CID, when HasFalconContainment grants it)
    assert enrich["FALCON_CID"] == remediate["FALCON_CID"] == {"Ref": "FalconCid"}
    assert remediate["FALCON_API_SECRET_NAME"] == {"Ref": "FalconApiSecretName"}
    assert remediate["FALCON_CLOUD"] == {"Ref": "FalconCloud"}
    assert remediate["FALCON_PROTECTED_GROUPING_TAG"] == {"Ref": "FalconProtectedGroupingTag"}
    # And the parameter's default is a protected grouping tag as Falcon lists it on a host
    default = template["Parameters"]["FalconProtectedGroupingTag"]["Default"]
    assert default == "FalconGroupingTags/vtriage-protected"


@pytest.mark.parametrize(
    ("given", "read"),
    [
        (CID, "92012896127c4a948236ba7601b886b0"),
        ("92012896127c4a948236ba7601b886b0", "92012896127c4a948236ba7601b886b0"),
        ("", None),
    ],
)
def test_the_cid_parameter_takes_the_console_form_and_the_functions_read_the_api_form(
    template: dict[str, Any], given: str, read: str | None
) -> None:
    # Given a CID as the Falcon console shows it (capitals and a checksum) or as the API does, or none
    pattern = template["Parameters"]["FalconCid"]["AllowedPattern"]

    # When CloudFormation checks it and each function's settings read it
    environment = {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}
    remediate = RemediateSettings.from_environ({**environment, "FALCON_CID": given})
    enrich_fields = EnrichSettings.model_fields["falcon_cid"]

    # Then the parameter takes it, and the deployment's tenant is the API's form of it
    assert re.fullmatch(pattern, given)
    assert remediate.place.falcon_cid == read
    assert enrich_fields.alias == "FALCON_CID"


def test_a_cid_that_is_no_cid_is_refused_by_the_parameter_and_the_settings(template: dict[str, Any]) -> None:
    # Given a value that is no Falcon customer id
    wrong = "4446934rf3fdb64ec3056ddfb96e"

    # Then CloudFormation refuses it, and so does the function at start-up, saying what a CID is
    assert not re.fullmatch(template["Parameters"]["FalconCid"]["AllowedPattern"], wrong)
    environment = {"AWS_REGION": "us-east-1", "CASES_TABLE_NAME": "cases", "OWN_ACCOUNT_ID": "123456789012"}
    with pytest.raises(ConfigurationError, match="32 hexadecimal digits"):
        RemediateSettings.from_environ({**environment, "FALCON_CID": wrong})
