"""CrowdStrike Falcon's API client as the Falcon poller and the remediate function (host containment)
build it: the cloud's base URL (or FALCON_BASE_URL) and the API client's credentials from its Secrets
Manager secret, one client (and so one token) per container."""

from __future__ import annotations

import requests

from vtriage.adapters.falcon import FALCON_CLOUDS, FalconClient, FalconCredentials
from vtriage.composition import secret_object
from vtriage.config.falcon import FalconApiSettings


def falcon_client(settings: FalconApiSettings, secret_name: str) -> FalconClient:
    """A Falcon API client with the credentials the secret holds ({"client_id", "client_secret"});
    ConfigurationError naming the secret when it holds no such object."""
    secret = secret_object(settings, secret_name, ("client_id", "client_secret"))
    return FalconClient(
        requests.Session(),
        settings.falcon_base_url or FALCON_CLOUDS[settings.falcon_cloud],
        FalconCredentials(secret["client_id"].strip(), secret["client_secret"].strip()),
    )
