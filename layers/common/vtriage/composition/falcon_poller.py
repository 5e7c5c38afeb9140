"""The Falcon poller's composition root: CrowdStrike's Alerts API, with the API client's credentials from
Secrets Manager, polled onto the detector queue."""

from __future__ import annotations

from functools import cache

import requests

from vtriage.adapters.falcon import FALCON_CLOUDS, FalconAlertSource, FalconClient, FalconCredentials
from vtriage.composition.pollers import poller, secret_object
from vtriage.config import FalconPollerSettings
from vtriage.polling import Poller

SOURCE = "falcon"


@cache
def falcon_poller(settings: FalconPollerSettings) -> Poller:
    """The Falcon poller, built once per container (its token outlives an invocation)."""
    secret = secret_object(settings, settings.falcon_api_secret, ("client_id", "client_secret"))
    client = FalconClient(
        requests.Session(),
        settings.falcon_base_url or FALCON_CLOUDS[settings.falcon_cloud],
        FalconCredentials(secret["client_id"].strip(), secret["client_secret"].strip()),
    )
    return poller(settings, SOURCE, FalconAlertSource(client, settings.page_size, settings.falcon_filter))
