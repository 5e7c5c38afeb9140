"""Ec2VolumeSnapshots and Ec2InstanceTagging against moto's EC2: the snapshots and tags an instance ends
up with, and what rollback leaves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import launch_instance, use_dummy_aws_credentials
from vtriage.adapters.ec2 import Ec2InstanceTagging, Ec2VolumeSnapshots
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
PROTECTED_TAG = "vtriage:protected"
CASE_ID = "guardduty-0123456789abcdef0123456789abcdef"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An EC2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def instance_volumes(ec2: Any, instance_id: str) -> dict[str, str]:
    """Volume id to device name, as EC2 reports them now."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {m["Ebs"]["VolumeId"]: m["DeviceName"] for m in instance["BlockDeviceMappings"]}


def case_snapshots(ec2: Any) -> dict[str, dict[str, str]]:
    """Snapshot id to its tags, for every snapshot tagged with the case id."""
    snapshots = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:vtriage:case", "Values": [CASE_ID]}]
    )["Snapshots"]
    return {
        s["SnapshotId"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])} | {"volume": s["VolumeId"]}
        for s in snapshots
    }


def instance_tags(ec2: Any, instance_id: str) -> dict[str, str]:
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def planned(action_type: ActionType, instance_id: str) -> Action:
    """An action as the remediation's run step hands it to an actuator: with the case id."""
    return Action(type=action_type, target=instance_id, parameters={"case_id": CASE_ID})


# --- snapshots -----------------------------------------------------------------------------------


def test_every_volume_is_snapshotted_and_tagged_with_the_case(ec2: Any) -> None:
    # Given an instance with a root and a data volume
    instance_id = launch_instance(ec2, data_volume=True).instance_id
    volumes = instance_volumes(ec2, instance_id)
    assert len(volumes) == 2

    # When its volumes are snapshotted for real
    action = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False
    )

    # Then each volume has one snapshot tagged with the case, the instance and the device
    snapshots = case_snapshots(ec2)
    assert sorted(tags["volume"] for tags in snapshots.values()) == sorted(volumes)
    for tags in snapshots.values():
        assert tags["vtriage:instance"] == instance_id
        assert tags["vtriage:device"] == volumes[tags["volume"]]
    # And the action records which snapshot holds which volume
    assert action.status is ActionStatus.DONE
    assert action.after == {"volumes": volumes, "snapshots": {t["volume"]: s for s, t in snapshots.items()}}
    assert action.before == {"volumes": volumes, "snapshots": {}}


def test_dry_run_takes_no_snapshot_and_names_the_volumes(ec2: Any) -> None:
    # Given an instance
    instance_id = launch_instance(ec2, data_volume=True).instance_id

    # When its volumes are snapshotted in dry run
    action = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), True
    )

    # Then there is no snapshot, and the detail names every volume and device
    assert case_snapshots(ec2) == {}
    assert action.status is ActionStatus.DRY_RUN
    assert action.detail.startswith("dry run, nothing changed")
    for volume, device in instance_volumes(ec2, instance_id).items():
        assert f"{volume} ({device})" in action.detail


def test_snapshotting_twice_takes_no_new_snapshot(ec2: Any) -> None:
    # Given an instance snapshotted once for the case
    instance_id = launch_instance(ec2, data_volume=True).instance_id
    actuator = Ec2VolumeSnapshots(ec2, PROTECTED_TAG)
    first = actuator.run(planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False)
    taken = case_snapshots(ec2)

    # When it is snapshotted again
    second = actuator.run(planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False)

    # Then no new snapshot was taken, and the action says it is already done
    assert case_snapshots(ec2) == taken
    assert second.status is ActionStatus.DONE
    assert second.detail.startswith("already snapshotted")
    assert second.after == first.after


def test_rollback_keeps_the_snapshots_for_forensics(ec2: Any) -> None:
    # Given snapshots taken for the case
    instance_id = launch_instance(ec2, data_volume=True).instance_id
    actuator = Ec2VolumeSnapshots(ec2, PROTECTED_TAG)
    done = actuator.run(planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False)
    taken = case_snapshots(ec2)

    # When the action is rolled back
    undone = actuator.rollback(done)

    # Then the snapshots are still there, and the action says why it stays done
    assert case_snapshots(ec2) == taken
    assert undone.status is ActionStatus.DONE
    assert "kept for forensics" in undone.detail
    for snapshot_id in taken:
        assert snapshot_id in undone.detail


def test_a_protected_instance_is_not_snapshotted(ec2: Any) -> None:
    # Given an instance carrying the protected tag
    instance_id = launch_instance(ec2, tags={PROTECTED_TAG: "prod-db"}, data_volume=True).instance_id

    # When its volumes are snapshotted
    action = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False
    )

    # Then it is skipped with the reason, and there is no snapshot
    assert action.status is ActionStatus.SKIPPED
    assert f"{PROTECTED_TAG}='prod-db'" in action.detail
    assert case_snapshots(ec2) == {}


@pytest.mark.parametrize("device", ["/dev/sda1", "/dev/sdf"], ids=["root-volume", "data-volume"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["for-real", "dry-run"])
def test_an_instance_with_a_protected_volume_is_not_snapshotted(ec2: Any, device: str, dry_run: bool) -> None:
    # Given an unprotected instance with a root and a data volume, one of which carries the protected tag
    # (its key typed otherwise: the deployed Deny would refuse that volume's snapshot, after the other's)
    instance_id = launch_instance(ec2, data_volume=True).instance_id
    [volume] = [vol for vol, name in instance_volumes(ec2, instance_id).items() if name == device]
    ec2.create_tags(Resources=[volume], Tags=[{"Key": " vtriage:PROTECTED", "Value": ""}])

    # When its volumes are snapshotted
    action = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), dry_run
    )

    # Then the whole action is skipped, the reason naming the volume and its tag, and no volume is
    # snapshotted, not even the unprotected one
    assert action.status is ActionStatus.SKIPPED, action.detail
    assert action.detail == (
        f"not snapshotted: volume {volume} ({device}) carries the protected tag "
        "' vtriage:PROTECTED'='' (read as vtriage:protected)"
    )
    assert case_snapshots(ec2) == {}


class RefusesSnapshotOf:
    """The EC2 client, refusing every snapshot of one volume as IAM refuses a request a policy denies (moto
    enforces no IAM; here a Deny the code cannot read, an organisation's SCP or a KMS key's grant). Every
    other call goes to the real client."""

    def __init__(self, client: Any, volume_id: str, code: str) -> None:
        self._client, self._volume_id, self._code = client, volume_id, code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_snapshot(self, **kwargs: Any) -> Any:
        if kwargs["VolumeId"] == self._volume_id:
            answer: Any = {
                "Error": {"Code": self._code, "Message": "You are not authorized to perform this operation."},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
            raise ClientError(answer, "CreateSnapshot")
        return self._client.create_snapshot(**kwargs)


def test_a_snapshot_ec2_refuses_part_way_fails_naming_the_snapshots_taken_and_the_volume_refused(
    ec2: Any,
) -> None:
    # Given an instance with a root and a data volume, whose data volume's snapshot IAM refuses
    instance_id = launch_instance(ec2, data_volume=True).instance_id
    volumes = instance_volumes(ec2, instance_id)
    [root] = [volume for volume, device in volumes.items() if device != "/dev/sdf"]
    [data] = [volume for volume, device in volumes.items() if device == "/dev/sdf"]
    refusing = RefusesSnapshotOf(ec2, data, "UnauthorizedOperation")

    # When its volumes are snapshotted for real
    action = Ec2VolumeSnapshots(refusing, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False
    )

    # Then the root volume's snapshot was taken, and the failed action names it and the volume refused
    [(snapshot, tags)] = case_snapshots(ec2).items()
    assert tags["volume"] == root
    assert action.status is ActionStatus.FAILED
    assert action.detail == (
        f"snapshotted only in part: took {snapshot} of {root} ({volumes[root]}); "
        f"EC2 refused the snapshot of {data} (/dev/sdf): UnauthorizedOperation"
    )
    assert action.before == {"volumes": volumes, "snapshots": {}}
    assert action.after == {
        "volumes": volumes,
        "snapshots": {root: snapshot},
        "refused": {data: "UnauthorizedOperation"},
    }

    # And once the refusal is lifted, running it again takes the data volume's snapshot alone
    again = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False
    )
    assert again.status is ActionStatus.DONE
    assert sorted(tags["volume"] for tags in case_snapshots(ec2).values()) == sorted(volumes)
    assert again.after is not None
    assert again.after["snapshots"][root] == snapshot


def test_a_snapshot_refused_for_every_volume_fails_saying_none_was_taken(ec2: Any) -> None:
    # Given an instance with one volume, whose snapshot IAM refuses
    instance_id = launch_instance(ec2).instance_id
    [(volume, device)] = instance_volumes(ec2, instance_id).items()

    # When it is snapshotted
    action = Ec2VolumeSnapshots(RefusesSnapshotOf(ec2, volume, "AccessDenied"), PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, instance_id), False
    )

    # Then nothing was taken, and the action says so and why
    assert case_snapshots(ec2) == {}
    assert action.status is ActionStatus.FAILED
    assert action.detail == (
        f"not snapshotted: no snapshot taken; EC2 refused the snapshot of {volume} ({device}): AccessDenied"
    )


def test_snapshotting_a_missing_instance_fails_with_the_reason(ec2: Any) -> None:
    # Given no such instance, When it is snapshotted
    action = Ec2VolumeSnapshots(ec2, PROTECTED_TAG).run(
        planned(ActionType.SNAPSHOT_VOLUMES, "i-0123456789abcdef0"), False
    )

    # Then the action failed with EC2's reason
    assert action.status is ActionStatus.FAILED
    assert "InvalidInstanceID.NotFound" in action.detail


# --- tags ----------------------------------------------------------------------------------------


def test_tagging_marks_the_instance_and_rollback_removes_the_tags(ec2: Any) -> None:
    # Given an instance with a tag of its own
    instance_id = launch_instance(ec2, tags={"Name": "web-1"}, data_volume=True).instance_id
    actuator = Ec2InstanceTagging(ec2, PROTECTED_TAG)

    # When it is tagged for real
    done = actuator.run(planned(ActionType.TAG_INSTANCE, instance_id), False)

    # Then it carries the case and the quarantine mark beside its own tag
    assert instance_tags(ec2, instance_id) == {
        "Name": "web-1",
        "vtriage:case": CASE_ID,
        "vtriage:quarantined": "true",
    }
    assert done.status is ActionStatus.DONE
    assert done.before == {"tags": {"vtriage:case": None, "vtriage:quarantined": None}}

    # And when it is rolled back, only its own tag is left
    undone = actuator.rollback(done)
    assert instance_tags(ec2, instance_id) == {"Name": "web-1"}
    assert undone.status is ActionStatus.ROLLED_BACK
    assert "removed vtriage:case, vtriage:quarantined" in undone.detail


def test_rollback_gives_back_the_tag_of_an_earlier_case(ec2: Any) -> None:
    # Given an instance already tagged by an earlier case, then tagged by this one
    instance_id = launch_instance(
        ec2, tags={"vtriage:case": "guardduty-earlier"}, data_volume=True
    ).instance_id
    actuator = Ec2InstanceTagging(ec2, PROTECTED_TAG)
    done = actuator.run(planned(ActionType.TAG_INSTANCE, instance_id), False)
    assert "replacing vtriage:case=guardduty-earlier" in done.detail

    # When this case's tagging is rolled back
    actuator.rollback(done)

    # Then the earlier case's tag is back
    assert instance_tags(ec2, instance_id) == {"vtriage:case": "guardduty-earlier"}


def test_tagging_dry_run_and_twice_change_nothing(ec2: Any) -> None:
    # Given an instance
    instance_id = launch_instance(ec2, tags={"Name": "web-1"}, data_volume=True).instance_id
    actuator = Ec2InstanceTagging(ec2, PROTECTED_TAG)

    # When it is tagged in dry run, Then no tag was added and the detail says which would be
    dry = actuator.run(planned(ActionType.TAG_INSTANCE, instance_id), True)
    assert instance_tags(ec2, instance_id) == {"Name": "web-1"}
    assert dry.status is ActionStatus.DRY_RUN
    assert f"would tag vtriage:case={CASE_ID}, vtriage:quarantined=true" in dry.detail

    # When it is tagged twice for real, Then the second says it is already tagged and changes nothing
    actuator.run(planned(ActionType.TAG_INSTANCE, instance_id), False)
    tagged = instance_tags(ec2, instance_id)
    again = actuator.run(planned(ActionType.TAG_INSTANCE, instance_id), False)
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already tagged")
    assert instance_tags(ec2, instance_id) == tagged


def test_a_protected_instance_is_not_tagged(ec2: Any) -> None:
    # Given an instance carrying the protected tag
    instance_id = launch_instance(ec2, tags={PROTECTED_TAG: ""}, data_volume=True).instance_id

    # When it is tagged
    action = Ec2InstanceTagging(ec2, PROTECTED_TAG).run(planned(ActionType.TAG_INSTANCE, instance_id), False)

    # Then it is skipped with the reason and carries no new tag
    assert action.status is ActionStatus.SKIPPED
    assert PROTECTED_TAG in action.detail
    assert instance_tags(ec2, instance_id) == {PROTECTED_TAG: ""}


def test_tagging_a_missing_instance_fails_with_the_reason(ec2: Any) -> None:
    # Given no such instance, When it is tagged
    action = Ec2InstanceTagging(ec2, PROTECTED_TAG).run(
        planned(ActionType.TAG_INSTANCE, "i-0123456789abcdef0"), False
    )

    # Then the action failed with EC2's reason
    assert action.status is ActionStatus.FAILED
    assert "InvalidInstanceID.NotFound" in action.detail


@pytest.mark.parametrize("actuator_class", [Ec2VolumeSnapshots, Ec2InstanceTagging])
def test_throttling_is_transient(actuator_class: type[Ec2VolumeSnapshots | Ec2InstanceTagging]) -> None:
    # Given EC2 throttling (botocore's Stubber, no network)
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_instances", service_error_code="RequestLimitExceeded", http_status_code=503
    )
    stubber.activate()
    action_type = (
        ActionType.SNAPSHOT_VOLUMES if actuator_class is Ec2VolumeSnapshots else ActionType.TAG_INSTANCE
    )

    # When the action runs, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        actuator_class(client, PROTECTED_TAG).run(planned(action_type, "i-0123456789abcdef0"), False)
