"""Whether an IP address is one the account itself holds in a Region: an Elastic IP, or an address of one
of its network interfaces (an instance's, a load balancer's, a NAT gateway's)."""

from __future__ import annotations

import ipaddress
from typing import Any

from vtriage.adapters.aws_errors import transient_aws_errors

__all__ = ["own_address_holders", "own_address_refusal"]


def own_address_holders(ec2_client: Any, address: str) -> list[str]:
    """What holds `address` in the EC2 client's account and Region, each as a person reads it ("Elastic IP
    eipalloc-... on network interface eni-... of instance i-..."); empty when the account holds nothing at
    that address, or when it is no IP address. Throttling and 5xx raise `TransientError`.

    A finding's evidence may name the instance's own public address without saying it is the instance's
    (an OCSF endpoint with no instance_uid): only the live account can tell. Reads DescribeAddresses (every
    Elastic IP, associated or not) and DescribeNetworkInterfaces (every interface's private, public and IPv6
    addresses, whatever holds the interface), compared here as addresses: EC2's `association.public-ip`
    filter is not in moto, where the local runner acts."""
    try:
        wanted = ipaddress.ip_address(address.strip())
    except ValueError:
        return []
    with transient_aws_errors(f"EC2 is unavailable while checking whether {wanted} is this account's"):
        elastic = _elastic_ips(ec2_client, wanted) if wanted.version == 4 else []
        named = {str(found.get("NetworkInterfaceId")) for found in elastic}
        interfaces = [
            interface
            for interface in _network_interfaces(ec2_client)
            if interface.get("NetworkInterfaceId") not in named and wanted in _addresses_of(interface)
        ]
    return [_describe_elastic_ip(found) for found in elastic] + [
        _describe_interface(interface, wanted) for interface in interfaces
    ]


def own_address_refusal(ec2_client: Any, address: str) -> str | None:
    """The reason an IP-blocking action leaves `address` alone when the account holds it
    (`own_address_holders`), naming what holds it; None when the account holds nothing there."""
    holders = own_address_holders(ec2_client, address)
    if not holders:
        return None
    return (
        f"not blocked, nothing changed: {address.strip()} is this account's: {'; '.join(holders)}; "
        "vtriage never blocks an address its own account holds"
    )


def _elastic_ips(
    ec2_client: Any, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> list[dict[str, Any]]:
    response = ec2_client.describe_addresses(Filters=[{"Name": "public-ip", "Values": [str(wanted)]}])
    return [dict(found) for found in response.get("Addresses", [])]


def _network_interfaces(ec2_client: Any) -> list[dict[str, Any]]:
    paginator = ec2_client.get_paginator("describe_network_interfaces")
    return [dict(found) for page in paginator.paginate() for found in page.get("NetworkInterfaces", [])]


def _addresses_of(interface: dict[str, Any]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of the interface: private, public (an Elastic IP's or one EC2 assigned) and IPv6."""
    spelled: list[Any] = [interface.get("PrivateIpAddress"), interface.get("Association", {}).get("PublicIp")]
    for private in interface.get("PrivateIpAddresses", []):
        spelled += [private.get("PrivateIpAddress"), private.get("Association", {}).get("PublicIp")]
    spelled += [ipv6.get("Ipv6Address") for ipv6 in interface.get("Ipv6Addresses", [])]
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for value in spelled:
        try:
            found.add(ipaddress.ip_address(str(value)))
        except ValueError:
            continue
    return found


def _describe_elastic_ip(found: dict[str, Any]) -> str:
    text = f"Elastic IP {found.get('AllocationId') or found.get('PublicIp')}"
    if found.get("NetworkInterfaceId"):
        text += f" on network interface {found['NetworkInterfaceId']}"
    if found.get("InstanceId"):
        text += f" of instance {found['InstanceId']}"
    if not found.get("NetworkInterfaceId") and not found.get("InstanceId"):
        text += " (allocated, not associated)"
    return text


def _describe_interface(
    interface: dict[str, Any], wanted: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> str:
    public = {
        str(association.get("PublicIp"))
        for association in [
            interface.get("Association", {}),
            *(private.get("Association", {}) for private in interface.get("PrivateIpAddresses", [])),
        ]
    }
    kind = "IPv6 address" if wanted.version == 6 else "public IP" if str(wanted) in public else "private IP"
    text = f"{kind} of network interface {interface.get('NetworkInterfaceId')}"
    instance = interface.get("Attachment", {}).get("InstanceId")
    if instance:
        return f"{text} of instance {instance}"
    held_by = [
        str(value)
        for value in (interface.get("InterfaceType"), interface.get("Description"))
        if value and value != "interface"
    ]
    return f"{text} ({', '.join(held_by)})" if held_by else text
