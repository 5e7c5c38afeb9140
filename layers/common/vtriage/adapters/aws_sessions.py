"""AWS clients for each account and Region a finding may live in.

The deployment's own account is reached with the function's own credentials, in the finding's Region. A
member account is reached through the role it trusts this deployment with (`member-role.yaml`): STS
AssumeRole with the external id the role requires, the session named after the case
(`vtriage-<case id>`), so that the member's CloudTrail says what each call was for. Clients are made on
first use and kept for the container's life, one set per account and Region; a member's credentials are
botocore's refreshable credentials, assumed again before they expire and whenever another case uses them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from vtriage.adapters.aws_errors import error_code, is_transient
from vtriage.errors import MemberRoleError, TransientError

__all__ = [
    "AccountClients",
    "AwsSessions",
    "member_containment_policy_arn",
    "member_role_arn",
    "session_name",
]

# What IAM accepts in a role session name (2 to 64 of these characters).
_NOT_IN_A_SESSION_NAME = re.compile(r"[^\w+=,.@-]")
_SESSION_NAME_MAX = 64
# How long an assumed session lasts: a role's default maximum, well beyond one remediation step.
ASSUMED_SESSION_SECONDS = 3600


def session_name(case_id: str) -> str:
    """The role session name of the case's calls: `vtriage-<case id>`, any character IAM refuses
    replaced by `-`, cut at IAM's 64 characters."""
    return ("vtriage-" + _NOT_IN_A_SESSION_NAME.sub("-", case_id))[:_SESSION_NAME_MAX]


def member_role_arn(partition: str, account: str, role_name: str) -> str:
    """The ARN of the role vtriage assumes in a member account."""
    return f"arn:{partition}:iam::{account}:role/{role_name}"


def member_containment_policy_arn(partition: str, account: str, role_name: str) -> str:
    """The deny-all policy member-role.yaml creates beside the member role (`<role name>-user-containment`),
    attached to a user of that account whose access key is disabled."""
    return f"arn:{partition}:iam::{account}:policy/{role_name}-user-containment"


class AccountClients:
    """The clients of one account in one Region, each made on first use and kept."""

    def __init__(
        self, account: str, region: str, member: bool, make: Callable[[str], Any], partition: str = "aws"
    ) -> None:
        self.account = account
        self.region = region
        # Whether the account is a member (reached through its role) rather than the deployment's own.
        self.member = member
        self.partition = partition
        self._make = make
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The service's client in this account and Region."""
        if service not in self._clients:
            self._clients[service] = self._make(service)
        return self._clients[service]


class _CaseNamedCredentials(RefreshableCredentials):
    """A member role's credentials: refreshed by botocore before they expire, and assumed again (a
    session named after the other case) when another case is worked on."""

    def __init__(self, assume: Callable[[str], dict[str, str]], case_id: str) -> None:
        self._assume = assume
        self._wanted = case_id
        self._named = case_id
        metadata = assume(case_id)
        super().__init__(
            access_key=metadata["access_key"],
            secret_key=metadata["secret_key"],
            token=metadata["token"],
            expiry_time=datetime.fromisoformat(metadata["expiry_time"]),
            refresh_using=self._assume_for_the_case,
            method="vtriage-member-role",
        )

    def name_after(self, case_id: str) -> None:
        """Make the next calls (from now: assumed at once) in a session named after this case."""
        self._wanted = case_id
        self.get_frozen_credentials()

    def refresh_needed(self, refresh_in: int | None = None) -> bool:
        """botocore's rule (close to expiry), and: named after another case than the one worked on."""
        return self._named != self._wanted or bool(super().refresh_needed(refresh_in))

    def _assume_for_the_case(self) -> dict[str, str]:
        case_id = self._wanted
        metadata = self._assume(case_id)
        self._named = case_id
        return metadata


class _Given(CredentialProvider):
    """A credential provider that gives the credentials it holds (a member session's only source)."""

    METHOD = "vtriage-member-role"
    CANONICAL_NAME = "customVtriageMemberRole"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


class AwsSessions:
    """The clients of each (account, Region) a case may be acted on in: the own account's with the
    function's credentials, a listed member's through its role. Any other account is refused."""

    def __init__(
        self,
        *,
        own_account: str,
        members: frozenset[str],
        own_session: Callable[[str], boto3.session.Session],
        sts: Any,
        role_name: str,
        external_id: str,
        config: Config,
        endpoint_url: str | None = None,
    ) -> None:
        self._own_account = own_account
        self._members = members
        self._own_session = own_session
        self._sts = sts
        self._role_name = role_name
        self._external_id = external_id
        self._config = config
        self._endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], AccountClients] = {}
        self._member_sessions: dict[str, tuple[boto3.session.Session, _CaseNamedCredentials]] = {}
        self._loader: Any = None

    def clients(self, account: str, region: str, case_id: str) -> AccountClients:
        """The clients of the account in the Region, for the case's calls. A member's role is assumed
        now (a session named after the case) if its current session is another case's or about to
        expire. Raises `MemberRoleError` naming the account and role when the account is neither the
        own one nor a listed member, or its role cannot be assumed; `TransientError` when STS throttles."""
        with self._lock:
            if account == self._own_account:
                return self._kept(account, region, member=False)
            if account not in self._members:
                raise MemberRoleError(
                    f"account {account} is neither this deployment's ({self._own_account}) nor a listed "
                    "member account (MemberAccountIds): vtriage assumes no role there"
                )
            if account in self._member_sessions:
                self._member_sessions[account][1].name_after(case_id)
            else:
                self._start_member_session(account, case_id)
            return self._kept(account, region, member=True)

    def _kept(self, account: str, region: str, *, member: bool) -> AccountClients:
        key = (account, region)
        if key not in self._clients:
            session = self._member_sessions[account][0] if member else self._own_session(region)
            self._clients[key] = AccountClients(
                account,
                region,
                member,
                lambda service: session.client(
                    service,  # type: ignore[call-overload]
                    region_name=region,
                    config=self._config,
                    endpoint_url=self._endpoint_url,
                ),
                partition=self._partition(region),
            )
        return self._clients[key]

    def _partition(self, region: str) -> str:
        return self._own_session(region).get_partition_for_region(region) or "aws"

    def _start_member_session(self, account: str, case_id: str) -> None:
        """The member's session, its role assumed for the case (raising if it cannot be)."""
        credentials = _CaseNamedCredentials(self._assumer(account), case_id)
        member = botocore.session.get_session()
        # Every member session shares one loader of the service models: loading them again is most of what
        # a new client costs.
        if self._loader is not None:
            member.register_component("data_loader", self._loader)
        self._loader = member.get_component("data_loader")
        member.register_component("credential_provider", CredentialResolver([_Given(credentials)]))
        self._member_sessions[account] = (boto3.session.Session(botocore_session=member), credentials)

    def _assumer(self, account: str) -> Callable[[str], dict[str, str]]:
        partition = self._partition(self._sts.meta.region_name)
        role_arn = member_role_arn(partition, account, self._role_name)

        def assume(case_id: str) -> dict[str, str]:
            name = session_name(case_id)
            try:
                answer = self._sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=name,
                    ExternalId=self._external_id,
                    DurationSeconds=ASSUMED_SESSION_SECONDS,
                )
            except ClientError as error:
                if is_transient(error):
                    raise TransientError(f"STS could not assume {role_arn} just now: {error}") from error
                said = error.response.get("Error", {}).get("Message", "")
                raise MemberRoleError(
                    f"cannot assume the member role {role_arn} in account {account} "
                    f"({error_code(error) or 'error'}: {said}): "
                    "check that member-role.yaml is deployed there with this RoleName, trusting this "
                    "deployment's RemediateFunctionRoleArn, with the ExternalId of MemberExternalId"
                ) from error
            except BotoCoreError as error:
                raise MemberRoleError(
                    f"cannot assume the member role {role_arn} in account {account}: {error}"
                ) from error
            given = answer["Credentials"]
            expiry = given["Expiration"]
            return {
                "access_key": given["AccessKeyId"],
                "secret_key": given["SecretAccessKey"],
                "token": given["SessionToken"],
                "expiry_time": (
                    expiry.astimezone(UTC).isoformat() if isinstance(expiry, datetime) else str(expiry)
                ),
            }

        return assume
