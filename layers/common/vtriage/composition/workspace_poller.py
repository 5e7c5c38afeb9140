"""The Workspace poller's composition root: Google Workspace's Alert Center, called as an administrator
by a service account with domain-wide delegation (google-auth, from the key in Secrets Manager), polled
onto the detector queue. The only root that loads google-auth."""

from __future__ import annotations

from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from vtriage.adapters.workspace import SCOPE, WorkspaceAlertSource
from vtriage.composition import built_once, secret_object
from vtriage.composition.pollers import poller
from vtriage.config import https_url_problem
from vtriage.config.pollers import WorkspacePollerSettings
from vtriage.errors import ConfigurationError
from vtriage.polling import Poller

SOURCE = "workspace"
# What a service account key file holds that google-auth needs.
_KEY_FIELDS = ("client_email", "private_key", "token_uri")


@built_once
def workspace_poller(settings: WorkspacePollerSettings) -> Poller:
    """The Workspace poller, built once per container (its token outlives an invocation)."""
    name = settings.workspace_service_account_secret
    key = secret_object(settings, name, _KEY_FIELDS)
    # The signed assertion goes to the key's token_uri: never over plain http to another host.
    problem = https_url_problem(str(key["token_uri"]))
    if problem:
        raise ConfigurationError(f"the secret {name}: token_uri {problem}")
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            key, scopes=[SCOPE]
        )
    except ValueError:
        # google-auth's message may quote the key: say only what is wrong.
        raise ConfigurationError(
            f"the secret {name} is not a service account key Google issued (the JSON key file, unchanged)"
        ) from None
    delegated = credentials.with_subject(settings.delegated_admin)
    # One more token on a 401, then the answer stands (the adapter names the error).
    session = AuthorizedSession(delegated, max_refresh_attempts=1)  # type: ignore[no-untyped-call]
    return poller(
        settings,
        SOURCE,
        WorkspaceAlertSource(
            session,
            base_url=settings.alert_center_url,
            customer_id=settings.customer_id,
            page_size=settings.page_size,
        ),
    )
