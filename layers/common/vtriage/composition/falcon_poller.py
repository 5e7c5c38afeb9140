"""The Falcon poller's composition root: CrowdStrike's Alerts API, with the API client's credentials from
Secrets Manager, polled onto the detector queue."""

from __future__ import annotations

from vtriage.adapters.falcon import FalconAlertSource
from vtriage.composition import built_once
from vtriage.composition.falcon import falcon_client
from vtriage.composition.pollers import poller
from vtriage.config.pollers import FalconPollerSettings
from vtriage.polling import Poller

SOURCE = "falcon"


@built_once
def falcon_poller(settings: FalconPollerSettings) -> Poller:
    """The Falcon poller, built once per container (its token outlives an invocation)."""
    client = falcon_client(settings, settings.falcon_api_secret)
    return poller(settings, SOURCE, FalconAlertSource(client, settings.page_size, settings.falcon_filter))
