"""DnsFirewallDomainBlocker against botocore's Stubber: moto does not implement Route 53 Resolver DNS
Firewall, so each test states the requests AWS documents (ListFirewallDomains, UpdateFirewallDomains with
Operation ADD or REMOVE) and answers with the documented response shapes; the Stubber fails the test on
any request that differs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from vtriage.adapters.dns_firewall import DnsFirewallDomainBlocker
from vtriage.errors import TransientError
from vtriage.models import Action, ActionStatus, ActionType

pytestmark = pytest.mark.functional

REGION = "us-east-1"
LIST_ID = "rslvr-fdl-0123456789abcdef"
DOMAIN = "evil.example"


@pytest.fixture
def resolver() -> Iterator[tuple[Any, Stubber]]:
    """A Route 53 Resolver client with a Stubber: no network, every request checked against the model."""
    client = boto3.client(
        "route53resolver", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def listing(stubber: Stubber, *pages: list[str]) -> None:
    """ListFirewallDomains answers with these pages of domains (given fully qualified, with a final dot)."""
    for number, domains in enumerate(pages):
        expected: dict[str, Any] = {"FirewallDomainListId": LIST_ID}
        response: dict[str, Any] = {"Domains": domains}
        if number > 0:
            expected["NextToken"] = f"page-{number}"
        if number < len(pages) - 1:
            response["NextToken"] = f"page-{number + 1}"
        stubber.add_response("list_firewall_domains", response, expected)


def update(stubber: Stubber, operation: str, domain: str = DOMAIN) -> None:
    """UpdateFirewallDomains is expected with exactly this operation and domain."""
    stubber.add_response(
        "update_firewall_domains",
        {"Id": LIST_ID, "Name": "vtriage-blocked", "Status": "UPDATING", "StatusMessage": "Updating domains"},
        {"FirewallDomainListId": LIST_ID, "Operation": operation, "Domains": [domain]},
    )


def block(domain: str = DOMAIN) -> Action:
    return Action(type=ActionType.BLOCK_DOMAIN_DNS_FIREWALL, target=domain, parameters={"case_id": "case-1"})


def test_the_domain_is_added_and_rollback_removes_it(resolver: tuple[Any, Stubber]) -> None:
    # Given a list (two pages) that does not hold the domain
    client, stubber = resolver
    listing(stubber, ["other.example."], ["bad.example."])
    update(stubber, "ADD")
    actuator = DnsFirewallDomainBlocker(client, LIST_ID)

    # When the domain is blocked for real
    done = actuator.run(block(), dry_run=False)

    # Then it was added with Operation ADD, and the action records that it was absent before
    assert done.status is ActionStatus.DONE
    assert done.before == {"domain_list_id": LIST_ID, "domain": DOMAIN, "present": False}
    assert done.after == {"domain_list_id": LIST_ID, "domain": DOMAIN, "present": True}
    assert f"added {DOMAIN} to DNS Firewall domain list {LIST_ID}" in done.detail

    # And when it is rolled back while the list holds it, it is removed with Operation REMOVE
    listing(stubber, ["other.example.", "evil.example."])
    update(stubber, "REMOVE")
    undone = actuator.rollback(done)
    assert undone.status is ActionStatus.ROLLED_BACK
    assert undone.detail.startswith("rolled back: removed")


def test_a_domain_already_listed_is_not_added_again_nor_removed_on_rollback(
    resolver: tuple[Any, Stubber],
) -> None:
    # Given a list that already holds the domain (fully qualified, in capitals)
    client, stubber = resolver
    listing(stubber, ["EVIL.example."])
    actuator = DnsFirewallDomainBlocker(client, LIST_ID)

    # When the domain is blocked, and the action rolled back
    done = actuator.run(block(), dry_run=False)
    undone = actuator.rollback(done)

    # Then no update was sent (the Stubber holds none), and both say why
    assert done.status is ActionStatus.DONE
    assert done.detail.startswith("already blocked")
    assert undone.status is ActionStatus.ROLLED_BACK
    assert "was in DNS Firewall domain list" in undone.detail


def test_dry_run_only_reads_the_list(resolver: tuple[Any, Stubber]) -> None:
    # Given a list without the domain
    client, stubber = resolver
    listing(stubber, [])

    # When the domain is blocked in dry run
    action = DnsFirewallDomainBlocker(client, LIST_ID).run(block(), dry_run=True)

    # Then no update was sent, and the detail says what would be
    assert action.status is ActionStatus.DRY_RUN
    assert (
        action.detail == f"dry run, nothing changed: would add {DOMAIN} to DNS Firewall domain list {LIST_ID}"
    )


def test_an_account_without_a_domain_list_skips_so_that_a_ticket_is_opened(
    resolver: tuple[Any, Stubber],
) -> None:
    # Given no domain list configured
    client, _ = resolver

    # When a domain is blocked, Then nothing is asked of AWS and the action says why
    action = DnsFirewallDomainBlocker(client, None).run(block(), dry_run=False)
    assert action.status is ActionStatus.SKIPPED
    assert action.detail == "not blocked: no DNS Firewall domain list configured"


def test_a_missing_list_or_a_bad_domain_fails_with_the_reason(resolver: tuple[Any, Stubber]) -> None:
    # Given a list id DNS Firewall does not know
    client, stubber = resolver
    stubber.add_client_error(
        "list_firewall_domains", service_error_code="ResourceNotFoundException", http_status_code=400
    )
    actuator = DnsFirewallDomainBlocker(client, LIST_ID)

    # When a domain is blocked in it, and something that is not a domain is blocked
    missing = actuator.run(block(), dry_run=False)
    not_domain = actuator.run(block("http://evil.example/x"), dry_run=False)

    # Then both fail with a reason
    assert missing.status is ActionStatus.FAILED
    assert f"domain list {LIST_ID} not found" in missing.detail
    assert not_domain.status is ActionStatus.FAILED
    assert "is not a domain name" in not_domain.detail


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("InternalServiceErrorException", 500), ("ConflictException", 400)],
)
def test_throttling_server_errors_and_a_busy_list_are_transient(
    resolver: tuple[Any, Stubber], code: str, status: int
) -> None:
    # Given DNS Firewall throttling, failing, or busy with an earlier update
    client, stubber = resolver
    listing(stubber, [])
    stubber.add_client_error("update_firewall_domains", service_error_code=code, http_status_code=status)

    # When a domain is blocked, Then the state machine's Retry gets a TransientError
    with pytest.raises(TransientError, match=code):
        DnsFirewallDomainBlocker(client, LIST_ID).run(block(), dry_run=False)
