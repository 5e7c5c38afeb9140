"""WafIpSetBlocker against moto's WAFv2: what the IP set holds after blocking, rollback, races."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.functional.conftest import use_dummy_aws_credentials
from vtriage.adapters.waf import WafIpSetBlocker
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
SCOPE = "REGIONAL"
IP = "198.51.100.7"


@pytest.fixture
def waf(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A WAFv2 client on moto, with dummy credentials so that nothing can reach a real account."""
    use_dummy_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        yield boto3.client("wafv2", region_name=REGION)


def create_ip_set(
    waf: Any, addresses: list[str], version: str = "IPV4", name: str = "vtriage-blocked"
) -> str:
    """An IP set with these addresses and a description; returns its id."""
    summary = waf.create_ip_set(
        Name=name,
        Scope=SCOPE,
        IPAddressVersion=version,
        Addresses=addresses,
        Description="blocked by vtriage",
    )["Summary"]
    return str(summary["Id"])


def addresses(waf: Any, ip_set_id: str, name: str = "vtriage-blocked") -> list[str]:
    """The addresses the IP set holds now."""
    return list(waf.get_ip_set(Name=name, Scope=SCOPE, Id=ip_set_id)["IPSet"]["Addresses"])


def blocker(waf: Any, ip_set_id: str, name: str = "vtriage-blocked") -> WafIpSetBlocker:
    """The blocker of the IP set, the account's own addresses read from moto's EC2 in the same Region."""
    return WafIpSetBlocker(waf, name, ip_set_id, SCOPE, ec2_client=boto3.client("ec2", region_name=REGION))


def block(ip: str = IP) -> Action:
    return Action(type=ActionType.BLOCK_IP_WAF, target=ip, parameters={"case_id": "case-1"})


def test_the_ip_is_added_to_the_set_and_rollback_removes_it(waf: Any) -> None:
    # Given an IP set holding one other address
    ip_set_id = create_ip_set(waf, ["203.0.113.9/32"])

    # When the IP is blocked for real
    done = blocker(waf, ip_set_id).run(block(), dry_run=False)

    # Then the set holds it as a /32 beside the other, and keeps its description
    assert sorted(addresses(waf, ip_set_id)) == ["198.51.100.7/32", "203.0.113.9/32"]
    ip_set = waf.get_ip_set(Name="vtriage-blocked", Scope=SCOPE, Id=ip_set_id)["IPSet"]
    assert ip_set["Description"] == "blocked by vtriage"
    assert done.status is ActionStatus.DONE
    assert done.before == {"address": "198.51.100.7/32", "present": False, "covered_by": None}
    assert done.after == {"address": "198.51.100.7/32", "present": True, "covered_by": None}

    # And when it is rolled back, only the other address is left
    undone = blocker(waf, ip_set_id).rollback(done)
    assert addresses(waf, ip_set_id) == ["203.0.113.9/32"]
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("rolled back: removed 198.51.100.7/32")

    # And rolling back again changes nothing and says so
    again = blocker(waf, ip_set_id).rollback(done)
    assert again.detail.startswith("already as before")
    assert addresses(waf, ip_set_id) == ["203.0.113.9/32"]


def test_dry_run_changes_nothing_and_says_what_would_change(waf: Any) -> None:
    # Given an empty IP set
    ip_set_id = create_ip_set(waf, [])
    lock_token = waf.get_ip_set(Name="vtriage-blocked", Scope=SCOPE, Id=ip_set_id)["LockToken"]

    # When the IP is blocked in dry run
    action = blocker(waf, ip_set_id).run(block(), dry_run=True)

    # Then the set was not written to, and the detail names the address and the set
    assert addresses(waf, ip_set_id) == []
    assert waf.get_ip_set(Name="vtriage-blocked", Scope=SCOPE, Id=ip_set_id)["LockToken"] == lock_token
    assert action.status is ActionStatus.DRY_RUN
    assert f"would add 198.51.100.7/32 to WAF IP set vtriage-blocked ({ip_set_id}, {SCOPE})" in action.detail


def test_blocking_twice_adds_the_ip_once(waf: Any) -> None:
    # Given an IP blocked once
    ip_set_id = create_ip_set(waf, [])
    blocker(waf, ip_set_id).run(block(), dry_run=False)

    # When it is blocked again
    again = blocker(waf, ip_set_id).run(block(), dry_run=False)

    # Then the set holds it once and the action says it was already blocked
    assert addresses(waf, ip_set_id) == ["198.51.100.7/32"]
    assert again.status is ActionStatus.DONE
    assert again.detail.startswith("already blocked")


def test_an_ip_blocked_before_vtriage_stays_blocked_after_rollback(waf: Any) -> None:
    # Given a set that already blocks the IP, and a wider range holding another
    ip_set_id = create_ip_set(waf, ["198.51.100.7/32", "192.0.2.0/24"])
    actuator = blocker(waf, ip_set_id)

    # When both are "blocked" and then rolled back
    exact = actuator.run(block(), dry_run=False)
    covered = actuator.run(block("192.0.2.44"), dry_run=False)
    for action in (exact, covered):
        actuator.rollback(action)

    # Then nothing was added or removed: the set is as the team left it
    assert sorted(addresses(waf, ip_set_id)) == ["192.0.2.0/24", "198.51.100.7/32"]
    assert "covered by 192.0.2.0/24" in covered.detail
    assert exact.before is not None
    assert exact.before["present"] is True


def test_an_ipv6_address_goes_in_as_a_128_and_never_into_an_ipv4_set(waf: Any) -> None:
    # Given an IPv6 set and an IPv4 set
    v6 = create_ip_set(waf, [], version="IPV6", name="blocked-v6")
    v4 = create_ip_set(waf, [])

    # When an IPv6 address is blocked in each
    into_v6 = blocker(waf, v6, name="blocked-v6").run(block("2001:DB8:0:0::1"), dry_run=False)
    into_v4 = blocker(waf, v4).run(block("2001:db8::1"), dry_run=False)

    # Then the IPv6 set holds its canonical /128, and the IPv4 set refused it with the reason
    assert addresses(waf, v6, name="blocked-v6") == ["2001:db8::1/128"]
    assert into_v6.status is ActionStatus.DONE
    assert into_v4.status is ActionStatus.FAILED
    assert "holds IPV4 addresses, not IPV6" in into_v4.detail
    assert addresses(waf, v4) == []


class ConcurrentEditor:
    """A WAFv2 client through which, right after each read of the set, someone else changes it, the first
    `races` times: the lock token read is stale by the time the blocker writes."""

    def __init__(self, client: Any, races: int) -> None:
        self._client = client
        self.races_left = races
        self.edits: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_ip_set(self, **kwargs: Any) -> Any:
        response = self._client.get_ip_set(**kwargs)
        if self.races_left > 0:
            self.races_left -= 1
            other = f"203.0.113.{len(self.edits) + 1}/32"
            self.edits.append(other)
            self._client.update_ip_set(
                **kwargs,
                Addresses=[*response["IPSet"]["Addresses"], other],
                LockToken=response["LockToken"],
            )
        return response


def test_a_concurrent_change_is_read_again_and_kept(waf: Any) -> None:
    # Given a set that someone else changes between our read and our write, twice
    ip_set_id = create_ip_set(waf, [])
    racing = ConcurrentEditor(waf, races=2)

    # When the IP is blocked
    action = blocker(racing, ip_set_id).run(block(), dry_run=False)

    # Then it got in on the third try, and the other writer's addresses were not lost
    assert action.status is ActionStatus.DONE
    assert sorted(addresses(waf, ip_set_id)) == sorted([*racing.edits, "198.51.100.7/32"])
    assert len(racing.edits) == 2


def test_a_set_that_never_stops_changing_is_a_transient_error(waf: Any) -> None:
    # Given a set that changes under every read
    ip_set_id = create_ip_set(waf, [])
    racing = ConcurrentEditor(waf, races=100)

    # When the IP is blocked, Then the state machine's Retry gets a TransientError after a few tries
    with pytest.raises(TransientError, match="kept changing"):
        WafIpSetBlocker(
            racing,
            "vtriage-blocked",
            ip_set_id,
            SCOPE,
            ec2_client=boto3.client("ec2", region_name=REGION),
            max_attempts=3,
        ).run(block(), dry_run=False)
    assert "198.51.100.7/32" not in addresses(waf, ip_set_id)
    assert len(racing.edits) == 3


def test_a_missing_set_or_a_non_ip_target_fails_with_the_reason(waf: Any) -> None:
    # Given no such IP set
    missing = blocker(waf, "00000000-0000-0000-0000-000000000000")

    # When an IP is blocked in it, and a domain is blocked in a real one
    no_set = missing.run(block(), dry_run=False)
    not_ip = blocker(waf, create_ip_set(waf, [])).run(block("evil.example"), dry_run=False)

    # Then both fail with a reason a person can act on
    assert no_set.status is ActionStatus.FAILED
    assert "not found" in no_set.detail
    assert "WAFNonexistentItemException" in no_set.detail
    assert not_ip.status is ActionStatus.FAILED
    assert "'evil.example' is not an IP address" in not_ip.detail


@pytest.mark.parametrize(
    ("code", "status"), [("ThrottlingException", 400), ("WAFInternalErrorException", 500)]
)
def test_throttling_and_server_errors_are_transient(code: str, status: int) -> None:
    # Given WAF throttling or failing on its side (botocore's Stubber, no network)
    client = boto3.client("wafv2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error("get_ip_set", service_error_code=code, http_status_code=status)
    stubber.activate()
    # and an account holding no address (EC2 answering no Elastic IP and no network interface)
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    ec2_stubber = Stubber(ec2)
    ec2_stubber.add_response("describe_addresses", {"Addresses": []})
    ec2_stubber.add_response("describe_network_interfaces", {"NetworkInterfaces": []})
    ec2_stubber.activate()

    # When an IP is blocked, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match=code):
        WafIpSetBlocker(client, "vtriage-blocked", "some-id", SCOPE, ec2_client=ec2).run(
            block(), dry_run=False
        )
    stubber.assert_no_pending_responses()
