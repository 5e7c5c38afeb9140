"""Mirrors in the local account the instances and access keys that the alerts name, so that
remediation, dry-run or not, acts on resources with the alert's ids rather than failing on ones that
moto never heard of."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError

from vtriage.models import Alert, Resource, ResourceType

SEED_GROUP_NAME = "vtriage-local-seed"


@contextmanager
def _moto_ids(**ids: str | None) -> Iterator[None]:
    """Make moto hand out the given ids instead of random ones (moto has no API for EC2 custom ids)."""
    targets = {
        "vpc": "moto.ec2.models.vpcs.random_vpc_id",
        "eni": "moto.ec2.models.elastic_network_interfaces.random_eni_id",
        "instance": "moto.ec2.models.instances.random_instance_id",
    }
    with ExitStack() as stack:
        for kind, value in ids.items():
            if value:
                stack.enter_context(mock.patch(targets[kind], return_value=value))
        yield


def resources_named(alerts: Iterable[Alert], resource_type: ResourceType) -> list[Resource]:
    """Every resource of this type the alerts name, once."""
    found: dict[str, Resource] = {}
    for alert in alerts:
        for resource in alert.resources:
            if resource.type is resource_type:
                found.setdefault(resource.id, resource)
    return list(found.values())


def instances_named(alerts: Iterable[Alert]) -> list[Resource]:
    """Every instance resource of the alerts, once."""
    return resources_named(alerts, ResourceType.INSTANCE)


def seed_access_keys(iam: Any, keys: Iterable[Resource]) -> list[str]:
    """Create each access key (and its user) unless it exists; return the key ids created."""
    created: list[str] = []
    for key in keys:
        if not key.user_name:
            continue
        try:
            iam.create_user(UserName=key.user_name)
        except iam.exceptions.EntityAlreadyExistsException:
            if any(
                existing["AccessKeyId"] == key.id
                for existing in iam.list_access_keys(UserName=key.user_name)["AccessKeyMetadata"]
            ):
                continue
        # moto has no API for a chosen key id: make its generator hand out the alert's.
        with mock.patch("moto.iam.models.generate_access_key_id_from_account_id", return_value=key.id):
            iam.create_access_key(UserName=key.user_name)
        created.append(key.id)
    return created


def seed_instances(ec2: Any, instances: Iterable[Resource]) -> list[str]:
    """Create each instance (with its VPC and first interface) unless it exists; return the ids created."""
    created: list[str] = []
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for instance in instances:
        if _exists(ec2, instance.id):
            continue
        private = [address for address in instance.addresses if ipaddress.ip_address(address).is_private]
        vpc_id = _vpc(ec2, instance.vpc_id, private)
        subnet_id = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"][0][
            "SubnetId"
        ]
        group_id = _group(ec2, vpc_id)
        interface: dict[str, Any] = {"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [group_id]}
        if private and _in_subnet(ec2, subnet_id, private[0]):
            interface["PrivateIpAddress"] = private[0]
        eni_id = instance.network_interface_ids[0] if instance.network_interface_ids else None
        with _moto_ids(instance=instance.id, eni=eni_id):
            ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, NetworkInterfaces=[interface])
        created.append(instance.id)
    return created


def _exists(ec2: Any, instance_id: str) -> bool:
    try:
        return bool(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"])
    except ClientError:
        return False


def _vpc(ec2: Any, vpc_id: str | None, private: list[str]) -> str:
    if vpc_id:
        existing = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"]
        if existing:
            return vpc_id
    network = (
        ipaddress.ip_network(f"{private[0]}/16", strict=False)
        if private
        else ipaddress.ip_network("10.0.0.0/16")
    )
    with _moto_ids(vpc=vpc_id):
        created = ec2.create_vpc(CidrBlock=str(network))["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=created, CidrBlock=str(network))
    return str(created)


def _group(ec2: Any, vpc_id: str) -> str:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [SEED_GROUP_NAME]}]
    )["SecurityGroups"]
    if groups:
        return str(groups[0]["GroupId"])
    return str(
        ec2.create_security_group(
            GroupName=SEED_GROUP_NAME,
            Description="stands for the instance's own groups in local runs",
            VpcId=vpc_id,
        )["GroupId"]
    )


def _in_subnet(ec2: Any, subnet_id: str, address: str) -> bool:
    cidr = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["CidrBlock"]
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)
