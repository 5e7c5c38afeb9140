"""The approval function's adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.adapters.guardrails import DynamoApprovalStore, SnsApprovalNotifier, StepFunctionsTaskCallback
from vtriage.adapters.virustotal import VirusTotalClient
from vtriage.composition import (
    SECRET_MAX_AGE_SECONDS,
    aws_client,
    built_once,
    case_repository,
    virustotal_api_key,
)
from vtriage.config.approval import ApprovalSettings
from vtriage.errors import ConfigurationError
from vtriage.virustotal.widget import Widget

# A page waits for VirusTotal's widget URLs while a person looks at a blank tab: one attempt each, no
# back-off to speak of (a person reloads), within the page's own wait (`approval_page.WIDGET_WAIT_SECONDS`).
_WIDGET_TIMEOUT = (3.05, 4.0)
_WIDGET_ATTEMPTS = 2


@dataclass(frozen=True)
class ApprovalDependencies:
    """What the approval function acts through."""

    cases: DynamoCaseRepository
    store: DynamoApprovalStore
    callback: StepFunctionsTaskCallback
    notifier: SnsApprovalNotifier
    signing_key: Callable[[], bytes]
    # None when CASE_PAGE_KEY_SECRET is unset: case page links are then refused.
    case_page_key: Callable[[], bytes] | None
    # None without VT Augment: no VirusTotal key is read, the pages link to VirusTotal.
    widgets: VirusTotalWidgets | None


@built_once
def approval_dependencies(settings: ApprovalSettings) -> ApprovalDependencies:
    """The approval function's adapters, built once per container."""
    secrets = SecretsProvider(boto3_client=aws_client(settings, "secretsmanager"))

    def secret_key(name: str) -> Callable[[], bytes]:
        def key() -> bytes:
            # Cached for a few minutes, so a rotated key is picked up without a redeploy.
            return str(secrets.get(name, max_age=SECRET_MAX_AGE_SECONDS)).encode()

        return key

    return ApprovalDependencies(
        cases=case_repository(settings),
        store=DynamoApprovalStore(aws_client(settings, "dynamodb"), settings.guardrails_table),
        callback=StepFunctionsTaskCallback(aws_client(settings, "stepfunctions")),
        notifier=SnsApprovalNotifier(aws_client(settings, "sns"), settings.notification_topic_arn),
        signing_key=secret_key(settings.signing_key_secret),
        case_page_key=secret_key(settings.case_page_key_secret) if settings.case_page_key_secret else None,
        widgets=VirusTotalWidgets(settings, lambda: secrets) if settings.vt_augment else None,
    )


class VirusTotalWidgets:
    """VT Augment's widgets (`vtriage.ports.WidgetSource`) through the VirusTotal client, with the key read
    when a page first mints one (never for an approval request the state machine sends), and read again
    once its cache lapses: a rotated key gets a new client."""

    def __init__(self, settings: ApprovalSettings, secrets: Callable[[], SecretsProvider]) -> None:
        """Mint with the settings' key, API root and colours."""
        self._settings = settings
        self._secrets = secrets
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._client: VirusTotalClient | None = None
        self._key = ""

    def widget(self, query: str, deadline: float | None = None) -> Widget:
        """The observable's widget; `ConfigurationError` when the key cannot be read."""
        return self._current_client().widget(query, dict(self._settings.vt_augment_theme), deadline)

    def _current_client(self) -> VirusTotalClient:
        try:
            key = virustotal_api_key(self._settings, self._secrets)
        except GetParameterError as error:
            # Its message names the secret, never its value.
            raise ConfigurationError(f"the VirusTotal API key could not be read: {error}") from None
        with self._lock:
            if self._client is None or key != self._key:
                self._key = key
                self._client = VirusTotalClient(
                    self._session,
                    key,
                    self._settings.vt_base_url,
                    timeout=_WIDGET_TIMEOUT,
                    max_attempts=_WIDGET_ATTEMPTS,
                    backoff_cap=1.0,
                )
            return self._client
