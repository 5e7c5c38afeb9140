"""The clients of each account and Region: the own account's with the function's credentials, a member's
through its role (a session named after the case, the external id the role requires), kept for the
container's life and assumed again before they expire or when another case uses them. STS is a fake that
answers as AWS does; no request leaves the process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from vtriage.adapters.aws_sessions import AwsSessions, member_role_arn, session_name
from vtriage.errors import MemberRoleError, TransientError

OWN = "123456789012"
MEMBER = "210987654321"
CASE = "guardduty-0123456789abcdef0123456789abcdef"
OTHER_CASE = "securityhub-fedcba9876543210fedcba9876543210"


class FakeSts:
    """STS AssumeRole as AWS answers it: credentials valid for `lifetime`, or the error given."""

    def __init__(self, lifetime: timedelta = timedelta(hours=1), error: ClientError | None = None) -> None:
        self.meta = boto3.client(
            "sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ).meta
        self.lifetime = lifetime
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        number = len(self.calls)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIA{number:016d}",
                "SecretAccessKey": f"secret-{number}",
                "SessionToken": f"token-{number}",
                "Expiration": datetime.now(UTC) + self.lifetime,
            }
        }


def sessions(sts: FakeSts, members: frozenset[str] = frozenset({MEMBER})) -> AwsSessions:
    def own_session(region: str) -> boto3.session.Session:
        return boto3.session.Session(region_name=region, aws_access_key_id="own", aws_secret_access_key="own")

    return AwsSessions(
        own_account=OWN,
        members=members,
        own_session=own_session,
        sts=sts,
        role_name="vtriage-member",
        external_id="vtriage-123456789012",
        config=Config(retries={"max_attempts": 1}),
    )


def credentials_of(client: Any) -> tuple[str, str]:
    """The access key a client signs with, and its token."""
    frozen = client._request_signer._credentials.get_frozen_credentials()
    return frozen.access_key, frozen.token


def test_the_own_account_is_reached_with_the_functions_credentials_in_the_findings_region() -> None:
    # Given the own account's clients in another Region than the function's
    sts = FakeSts()
    own = sessions(sts).clients(OWN, "eu-west-1", CASE)

    # Then they are the function's own, in that Region, and no role was assumed
    ec2 = own.client("ec2")
    assert (own.account, own.region, own.member) == (OWN, "eu-west-1", False)
    assert ec2.meta.region_name == "eu-west-1"
    assert credentials_of(ec2)[0] == "own"
    assert sts.calls == []


def test_a_member_is_reached_through_its_role_in_a_session_named_after_the_case() -> None:
    # Given a member account's clients for a case, in another Region
    sts = FakeSts()
    member = sessions(sts).clients(MEMBER, "eu-west-1", CASE)

    # Then its role was assumed once, with the external id, in a session named after the case, and the
    # clients sign with those credentials, in the finding's Region
    [call] = sts.calls
    assert call["RoleArn"] == f"arn:aws:iam::{MEMBER}:role/vtriage-member"
    assert call["RoleSessionName"] == f"vtriage-{CASE}"
    assert call["ExternalId"] == "vtriage-123456789012"
    ec2 = member.client("ec2")
    assert (member.member, ec2.meta.region_name) == (True, "eu-west-1")
    assert credentials_of(ec2) == ("ASIA0000000000000001", "token-1")


def test_a_members_clients_are_kept_and_its_role_assumed_again_only_for_another_case() -> None:
    # Given a member's clients made for a case
    sts = FakeSts()
    reach = sessions(sts)
    first = reach.clients(MEMBER, "eu-west-1", CASE)
    ec2 = first.client("ec2")

    # When the same case asks again, in that Region and another, then another case asks
    again = reach.clients(MEMBER, "eu-west-1", CASE)
    reach.clients(MEMBER, "ap-southeast-2", CASE)
    assert len(sts.calls) == 1
    reach.clients(MEMBER, "eu-west-1", OTHER_CASE)

    # Then the clients are the same objects, kept; the role was assumed again once, named after the other
    # case, and the kept client now signs with the new session's credentials
    assert again is first
    assert again.client("ec2") is ec2
    assert [call["RoleSessionName"] for call in sts.calls] == [f"vtriage-{CASE}", f"vtriage-{OTHER_CASE}"]
    assert credentials_of(ec2) == ("ASIA0000000000000002", "token-2")


def test_a_members_credentials_close_to_expiry_are_assumed_again_before_they_are_used() -> None:
    # Given a member session that expires in twelve minutes (within botocore's refresh window of 15)
    sts = FakeSts(lifetime=timedelta(minutes=12))
    reach = sessions(sts)
    ec2 = reach.clients(MEMBER, "eu-west-1", CASE).client("ec2")

    # When the same case asks for the member's clients again
    reach.clients(MEMBER, "eu-west-1", CASE)

    # Then the role was assumed again, for the same case, and the client no longer signs with the first
    # session's credentials
    assert [call["RoleSessionName"] for call in sts.calls] == [f"vtriage-{CASE}"] * 2
    assert credentials_of(ec2)[0] != "ASIA0000000000000001"


def test_an_account_that_is_not_listed_is_refused_without_asking_sts() -> None:
    # Given a deployment whose only member is MEMBER
    sts = FakeSts()

    # When clients of another account are asked for, Then it refuses, naming the account
    with pytest.raises(MemberRoleError, match="account 999999999999 is neither this deployment's"):
        sessions(sts).clients("999999999999", "us-east-1", CASE)
    assert sts.calls == []


def sts_error(code: str, message: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "AssumeRole")


def test_a_role_that_cannot_be_assumed_is_a_member_role_error_naming_account_and_role() -> None:
    # Given STS refusing the member role, as AWS does when it is missing or does not trust the caller
    sts = FakeSts(error=sts_error("AccessDenied", "not authorized to perform: sts:AssumeRole", 403))

    # When a member's clients are asked for, Then the error names the role, the account and what to check
    with pytest.raises(MemberRoleError) as raised:
        sessions(sts).clients(MEMBER, "eu-west-1", CASE)
    message = str(raised.value)
    assert f"cannot assume the member role {member_role_arn('aws', MEMBER, 'vtriage-member')}" in message
    assert f"in account {MEMBER} (AccessDenied: not authorized" in message
    assert "member-role.yaml" in message
    assert "MemberExternalId" in message


def test_sts_throttling_is_transient() -> None:
    # Given STS throttling
    sts = FakeSts(error=sts_error("Throttling", "Rate exceeded", 400))

    # Then asking for a member's clients is worth retrying (the state machine's Retry)
    with pytest.raises(TransientError, match="Rate exceeded"):
        sessions(sts).clients(MEMBER, "eu-west-1", CASE)


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        (CASE, f"vtriage-{CASE}"),
        ("case with spaces/and:colons", "vtriage-case-with-spaces-and-colons"),
        ("x" * 100, "vtriage-" + "x" * 56),
    ],
)
def test_a_session_name_is_the_case_in_the_characters_and_length_iam_accepts(
    case_id: str, expected: str
) -> None:
    # Then it starts with vtriage- (the member role's trust requires it), and fits IAM's 64 characters
    assert session_name(case_id) == expected
    assert len(session_name(case_id)) <= 64
