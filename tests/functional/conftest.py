"""Functional tests run the real handlers and the real state machine on moto, built from template.yaml."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.exceptions import ClientError

from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.runner import VirusTotalSource, run_files
from vtriage_local.seed import mirror_image
from vtriage_local.stack import LocalAws
from vtriage_local.template import PROJECT_ROOT

EVENTS = PROJECT_ROOT / "events"


def use_dummy_aws_credentials(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Dummy credentials and no endpoint or profile, so that an in-process moto test can never reach a
    real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


_Target = TypeVar("_Target")


def answer_to(call: Callable[[_Target], Any], target: _Target) -> Any:
    """What a call made on `target` answers, comparable across two ways of reaching moto: its result
    without its response metadata, or its refusal as (code, HTTP status)."""
    try:
        answer = call(target)
    except ClientError as error:
        return (
            "refused",
            error.response["Error"]["Code"],
            error.response["ResponseMetadata"]["HTTPStatusCode"],
        )
    if isinstance(answer, dict):
        answer.pop("ResponseMetadata", None)
    return answer


def keyed_by_case_id(name: str, region: str = "us-east-1") -> Any:
    """A DynamoDB client of an in-process moto, with the on-demand table `name` keyed by `case_id` (S), as
    the cases table is."""
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "case_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "case_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def local_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """A fresh local AWS with the template's resources, VirusTotal served by the replay server."""
    with ReplayServer(bundled_recordings(), api_key="local-replay-key") as replay:
        monkeypatch.setenv("VT_BASE_URL", replay.base_url)
        monkeypatch.delenv("VT_API_KEY", raising=False)
        with LocalAws() as aws:
            yield aws


def run_pipeline(*paths: Path, recordings: Path | None = None) -> dict[str, Any]:
    """`vtriage run --json` on these files, as a document."""
    return run_files(
        list(paths), VirusTotalSource(recordings=recordings or bundled_recordings()), io.StringIO()
    )


def wait_for_execution(sfn: Any, execution_arn: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """The execution once it has left RUNNING."""
    deadline = time.monotonic() + timeout_s
    while True:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING" or time.monotonic() > deadline:
            return execution
        time.sleep(0.05)


def event(name: str) -> Path:
    """A sample event from events/."""
    path = EVENTS / name
    assert path.is_file(), f"missing sample {path}"
    return path


def load_event(name: str) -> Any:
    """A sample event, decoded."""
    return json.loads(event(name).read_text())


def machine_image(ec2: Any) -> str:
    """The image the local AWS launches instances from (it loads none of moto's Amazon images)."""
    return mirror_image(ec2)


@dataclass(frozen=True)
class LaunchedInstance:
    """An instance in a VPC of its own, behind one security group."""

    instance_id: str
    vpc_id: str
    subnet_id: str
    group_id: str


def launch_instance(
    ec2: Any,
    *,
    tags: dict[str, str] | None = None,
    ssh_open: bool = False,
    second_interface: bool = False,
    data_volume: bool = False,
) -> LaunchedInstance:
    """Launch an instance on moto in a new VPC and subnet, behind a new group named `web` (allowing SSH
    from anywhere when `ssh_open`), with these tags; a second network interface in the same group when
    `second_interface`, a second volume attached as /dev/sdf when `data_volume`."""
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]
    subnet_id = subnet["SubnetId"]
    group_id = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc_id)["GroupId"]
    if ssh_open:
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            ],
        )
    image_id = machine_image(ec2)
    # Groups given on the interface, not SecurityGroupIds: with the latter moto pins them on every
    # interface whatever ModifyNetworkInterfaceAttribute sets later, which AWS does not.
    instance_id = ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [group_id]}],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        if tags
        else [],
    )["Instances"][0]["InstanceId"]
    if second_interface:
        second = ec2.create_network_interface(SubnetId=subnet_id, Groups=[group_id])["NetworkInterface"]
        ec2.attach_network_interface(
            NetworkInterfaceId=second["NetworkInterfaceId"], InstanceId=instance_id, DeviceIndex=1
        )
    if data_volume:
        volume_id = ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=10)["VolumeId"]
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    return LaunchedInstance(str(instance_id), vpc_id, subnet_id, group_id)
