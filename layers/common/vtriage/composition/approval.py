"""The approval function's adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.guardrails import DynamoApprovalStore, SnsApprovalNotifier, StepFunctionsTaskCallback
from vtriage.composition import SECRET_MAX_AGE_SECONDS, aws_client, case_repository
from vtriage.config import ApprovalSettings


@dataclass(frozen=True)
class ApprovalDependencies:
    """What the approval function acts through."""

    cases: DynamoCaseRepository
    store: DynamoApprovalStore
    callback: StepFunctionsTaskCallback
    notifier: SnsApprovalNotifier
    signing_key: Callable[[], bytes]


@cache
def approval_dependencies(settings: ApprovalSettings) -> ApprovalDependencies:
    """The approval function's adapters, built once per container."""
    secrets = SecretsProvider(boto3_client=aws_client(settings, "secretsmanager"))

    def signing_key() -> bytes:
        # Cached for a few minutes, so a rotated key is picked up without a redeploy.
        return str(secrets.get(settings.signing_key_secret, max_age=SECRET_MAX_AGE_SECONDS)).encode()

    return ApprovalDependencies(
        cases=case_repository(settings),
        store=DynamoApprovalStore(aws_client(settings, "dynamodb"), settings.guardrails_table),
        callback=StepFunctionsTaskCallback(aws_client(settings, "stepfunctions")),
        notifier=SnsApprovalNotifier(aws_client(settings, "sns"), settings.notification_topic_arn),
        signing_key=signing_key,
    )
