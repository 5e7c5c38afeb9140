"""Mirrors into moto the instances, access keys and S3 objects that the alerts name, each in its finding's
own account and Region, so that remediation, dry-run or not, acts on resources with the alert's ids, where
the finding says they live, rather than failing on ones that moto never heard of."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError

from vtriage.models import Alert, Resource, ResourceType

SEED_GROUP_NAME = "vtriage-local-seed"
_ACCOUNT = re.compile(r"\d{12}")
# A commercial, GovCloud or China Region's name (`us-east-1`, `us-gov-west-1`, `cn-north-1`).
_REGION = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-\d{1,2}")


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


def alerts_by_place(alerts: Iterable[Alert]) -> dict[tuple[str, str], list[Alert]]:
    """The alerts by the place their finding names: (account, Region)."""
    found: dict[tuple[str, str], list[Alert]] = {}
    for alert in alerts:
        found.setdefault((alert.account, alert.region), []).append(alert)
    return found


def unmirrorable(account: str, region: str) -> str | None:
    """Why nothing can be mirrored where a finding says its resources live (no account id, no Region
    AWS could have), or None."""
    if not _ACCOUNT.fullmatch(account):
        return f"the finding names no account id ({account[:64]!r})"
    if not _REGION.fullmatch(region):
        return f"the finding names no AWS Region ({region[:64]!r})"
    return None


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


@dataclass
class Mirrored:
    """What seeding created, and what it left out with the reason (the run goes on without it)."""

    created: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def seed_access_keys(iam: Any, keys: Iterable[Resource]) -> Mirrored:
    """Create each access key (and its user) unless it exists."""
    mirrored = Mirrored()
    for key in keys:
        if not key.user_name:
            continue
        try:
            if _create_access_key(iam, key):
                mirrored.created.append(key.id)
        except ClientError as error:
            mirrored.left_out.append(f"access key {key.id!r} of {key.user_name!r}: {error}")
    return mirrored


def _create_access_key(iam: Any, key: Resource) -> bool:
    try:
        iam.create_user(UserName=key.user_name)
    except iam.exceptions.EntityAlreadyExistsException:
        if any(
            existing["AccessKeyId"] == key.id
            for existing in iam.list_access_keys(UserName=key.user_name)["AccessKeyMetadata"]
        ):
            return False
    # moto has no API for a chosen key id: make its generator hand out the alert's.
    with mock.patch("moto.iam.models.generate_access_key_id_from_account_id", return_value=key.id):
        iam.create_access_key(UserName=key.user_name)
    return True


def seed_s3_objects(s3: Any, region: str, objects: Iterable[Resource], quarantine_bucket: str) -> Mirrored:
    """Create each object (and its bucket) unless it exists, and the quarantine bucket the deployment
    names when it does not exist. The object holds a stand-in body: its bytes are the finding's owner's,
    never the runner's to have."""
    mirrored = Mirrored()
    wanted = [item for item in objects if item.bucket and item.key]
    if wanted and quarantine_bucket:
        try:
            if _create_bucket(s3, quarantine_bucket, region):
                mirrored.created.append(f"s3://{quarantine_bucket}")
        except ClientError as error:
            mirrored.left_out.append(f"quarantine bucket {quarantine_bucket!r}: {error}")
    for item in wanted:
        where = f"s3://{item.bucket}/{item.key}"
        try:
            _create_bucket(s3, str(item.bucket), region)
            if not _object_exists(s3, str(item.bucket), str(item.key)):
                body = f"vtriage run's stand-in for {where}: the finding's object is not copied\n"
                s3.put_object(Bucket=item.bucket, Key=item.key, Body=body.encode())
                mirrored.created.append(where)
        except ClientError as error:
            mirrored.left_out.append(f"object {where!r}: {error}")
    return mirrored


def _create_bucket(s3: Any, bucket: str, region: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError:
        pass
    # us-east-1 takes no location constraint; every other Region needs its own.
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    return True


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        return False


MIRROR_IMAGE_NAME = "vtriage-local-mirror"


def mirror_image(ec2: Any) -> str:
    """The machine image mirrored instances are launched from, registered in the account and Region the
    first time: the local AWS loads none of moto's Amazon images (see LocalAws.start)."""
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [MIRROR_IMAGE_NAME]}])
    if found["Images"]:
        return str(found["Images"][0]["ImageId"])
    registered = ec2.register_image(
        Name=MIRROR_IMAGE_NAME,
        Description="the image vtriage run launches the instances a finding names from",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
    )
    return str(registered["ImageId"])


def seed_instances(ec2: Any, instances: Iterable[Resource]) -> Mirrored:
    """Create each instance (with its VPC and first interface) unless it exists, with the private
    addresses the alert gives it that no other mirrored instance holds already in its subnet."""
    mirrored = Mirrored()
    wanted = list(instances)
    if not wanted:
        return mirrored
    place = _Place.read(ec2, [instance.id for instance in wanted])
    for instance in wanted:
        try:
            if instance.id in place.instances:
                continue
            mirrored.left_out.extend(place.launch(instance))
            mirrored.created.append(instance.id)
        except ClientError as error:
            mirrored.left_out.append(f"instance {instance.id!r}: {error}")
    return mirrored


@dataclass
class _Place:
    """What one account and Region holds that mirroring needs, read once (a read an instance made a
    hundred instances' set-up take seconds) and kept up to date as instances are launched."""

    ec2: Any
    image_id: str
    instances: set[str]
    subnets: dict[str, dict[str, Any]]  # the first subnet of each VPC, by VPC id
    groups: dict[str, str]  # the seed's security group, by VPC id
    interfaces: set[str]
    addresses: dict[str, set[str]]  # the private addresses in use, by subnet id

    @classmethod
    def read(cls, ec2: Any, instance_ids: list[str]) -> _Place:
        """The place as it stands, before the named instances are launched."""
        instances = {
            str(instance["InstanceId"])
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": instance_ids}]
            )
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        }
        subnets: dict[str, dict[str, Any]] = {}
        for subnet in ec2.describe_subnets()["Subnets"]:
            subnets.setdefault(str(subnet["VpcId"]), subnet)
        groups = {
            str(group["VpcId"]): str(group["GroupId"])
            for group in ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [SEED_GROUP_NAME]}]
            )["SecurityGroups"]
        }
        interfaces: set[str] = set()
        addresses: dict[str, set[str]] = {}
        for interface in ec2.describe_network_interfaces()["NetworkInterfaces"]:
            interfaces.add(str(interface["NetworkInterfaceId"]))
            addresses.setdefault(str(interface["SubnetId"]), set()).update(
                str(address["PrivateIpAddress"]) for address in interface.get("PrivateIpAddresses", [])
            )
        return cls(ec2, mirror_image(ec2), instances, subnets, groups, interfaces, addresses)

    def launch(self, instance: Resource) -> list[str]:
        """Launch the instance; what of its addresses was left out, and why."""
        private = _private_ipv4(instance.addresses)
        vpc_id = self._vpc(instance.vpc_id, private)
        subnet = self.subnets[vpc_id]
        network = ipaddress.ip_network(subnet["CidrBlock"])
        in_use = self.addresses.setdefault(str(subnet["SubnetId"]), set())
        own = [address for address in private if ipaddress.ip_address(address) in network]
        free = [address for address in own if address not in in_use]
        left_out = [
            f"instance {instance.id!r}: address {address} is held by another mirrored instance"
            for address in own
            if address in in_use
        ]
        interface: dict[str, Any] = {
            "DeviceIndex": 0,
            "SubnetId": subnet["SubnetId"],
            "Groups": [self._group(vpc_id)],
        }
        if free:
            interface["PrivateIpAddress"] = free[0]
        eni_id = instance.network_interface_ids[0] if instance.network_interface_ids else None
        if eni_id and eni_id in self.interfaces:
            left_out.append(f"instance {instance.id!r}: interface {eni_id} is another mirrored instance's")
            eni_id = None
        with _moto_ids(instance=instance.id, eni=eni_id):
            launched = self.ec2.run_instances(
                ImageId=self.image_id, MinCount=1, MaxCount=1, NetworkInterfaces=[interface]
            )
        self.instances.add(instance.id)
        for attached in launched["Instances"][0]["NetworkInterfaces"]:
            self.interfaces.add(str(attached["NetworkInterfaceId"]))
            in_use.update(
                str(address["PrivateIpAddress"]) for address in attached.get("PrivateIpAddresses", [])
            )
        if len(free) > 1:
            interface_id = launched["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
            self.ec2.assign_private_ip_addresses(NetworkInterfaceId=interface_id, PrivateIpAddresses=free[1:])
            in_use.update(free[1:])
        return left_out

    def _vpc(self, vpc_id: str | None, private: list[str]) -> str:
        if vpc_id and vpc_id in self.subnets:
            return vpc_id
        network = (
            ipaddress.ip_network(f"{private[0]}/16", strict=False)
            if private
            else ipaddress.ip_network("10.0.0.0/16")
        )
        with _moto_ids(vpc=vpc_id):
            created = str(self.ec2.create_vpc(CidrBlock=str(network))["Vpc"]["VpcId"])
        self.subnets[created] = self.ec2.create_subnet(VpcId=created, CidrBlock=str(network))["Subnet"]
        return created

    def _group(self, vpc_id: str) -> str:
        if vpc_id not in self.groups:
            self.groups[vpc_id] = str(
                self.ec2.create_security_group(
                    GroupName=SEED_GROUP_NAME,
                    Description="stands for the instance's own groups in local runs",
                    VpcId=vpc_id,
                )["GroupId"]
            )
        return self.groups[vpc_id]


def _private_ipv4(addresses: Iterable[str]) -> list[str]:
    """The private IPv4 addresses among the alert's, each once (a VPC's primary range is IPv4)."""
    found: list[str] = []
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            continue
        if parsed.version == 4 and parsed.is_private and str(parsed) not in found:
            found.append(str(parsed))
    return found
