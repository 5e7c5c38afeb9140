"""The protected tag on moto's EC2: an instance carrying the key however a person typed it (case, spaces
around it or its colon) is never isolated; one carrying a key that only contains it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.functional.conftest import launch_instance, use_dummy_aws_credentials
from tests.unit.test_protected_tag import OTHER_KEYS, TYPED_OTHERWISE
from vtriage.adapters.ec2 import Ec2InstanceIsolation
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def interface_groups(ec2: Any, instance_id: str) -> list[str]:
    """The security groups of the instance's interface, as EC2 reports them now."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return [group["GroupId"] for group in instance["NetworkInterfaces"][0]["Groups"]]


def test_an_instance_protected_by_the_key_however_typed_is_never_isolated(ec2: Any) -> None:
    # Given an instance for each way a person may type the protected key, and one for each key that only
    # contains or resembles it
    protected = {key: launch_instance(ec2, tags={key: "true"}) for key in [PROTECTED_TAG, *TYPED_OTHERWISE]}
    unprotected = {key: launch_instance(ec2, tags={key: "true"}) for key in OTHER_KEYS}
    isolation = Ec2InstanceIsolation(ec2, "vtriage-quarantine", PROTECTED_TAG)

    # When each is isolated for real
    outcomes = {
        key: isolation.run(Action(type=ActionType.ISOLATE_INSTANCE, target=launched.instance_id), False)
        for key, launched in (protected | unprotected).items()
    }

    # Then every protected instance is skipped, saying which tag protects it, and keeps its groups
    for key, launched in protected.items():
        assert outcomes[key].status is ActionStatus.SKIPPED, (key, outcomes[key].detail)
        assert "not isolated: the instance carries the protected tag" in outcomes[key].detail
        assert interface_groups(ec2, launched.instance_id) == [launched.group_id]
    # And every other one is isolated: its key is not the protected one
    for key, launched in unprotected.items():
        assert outcomes[key].status is ActionStatus.DONE, (key, outcomes[key].detail)
        assert interface_groups(ec2, launched.instance_id) != [launched.group_id]
