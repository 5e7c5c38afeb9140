"""What `vtriage run` settles before anything starts: where VirusTotal answers from, how long deferred
records are waited for, the records read with names a person can tell apart, and the whole document of a
run none of whose records can be queued.

Nothing here loads moto or starts a server (the import contract `preflight-without-the-moto-stack` holds
it): a run of files that are all refused as they are read (a file that is not JSON, say) is answered in a
fraction of a second, where loading the local AWS alone takes over one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vtriage.config import is_loopback
from vtriage.config.virustotal import DEFAULT_VT_BASE_URL
from vtriage_local.accounting import Account, Finding, Journey, Settled, account
from vtriage_local.alert_files import Delivery
from vtriage_local.replay import bundled_recordings

__all__ = ["DEFERRED_WAIT_S", "Progress", "ReadRecords", "VirusTotalSource", "distinct_source_ids"]

# Told what the run is doing, one line at a time (the CLI prints them on stderr).
Progress = Callable[[str], None]


def nobody_watches(_: str) -> None:
    """The progress of a run nobody watches (`--quiet`): the runner then reads nothing to tell it."""


# Long enough for a minute window to reopen; a record deferred past it (a spent daily quota) is pending.
DEFERRED_WAIT_S = 150.0


@dataclass
class VirusTotalSource:
    """Where VirusTotal answers from: the live API when a key is given, otherwise the replay server."""

    api_key: str | None = None
    base_url: str = DEFAULT_VT_BASE_URL
    recordings: Path = field(default_factory=bundled_recordings)
    latency_ms: int = 0
    faults: dict[str, float] | None = None
    seed: int = 0

    @property
    def on_this_machine(self) -> bool:
        """True when no request leaves this machine: the replay server, or a live VT_BASE_URL on loopback
        (a stand-in of one's own). Such answers spend no VirusTotal quota."""
        if self.api_key is None:
            return True
        return is_loopback((urlsplit(self.base_url).hostname or "").lower())

    def describe(self) -> dict[str, Any]:
        """Where the run's VirusTotal answers come from, as the runner's JSON says it (`virustotal`)."""
        if self.api_key is not None:
            return {
                "mode": "live",
                "base_url": self.base_url,
                "recordings": None,
                "on_this_machine": self.on_this_machine,
            }
        bundled = self.recordings.resolve() == bundled_recordings().resolve()
        return {"mode": "replay", "base_url": None, "recordings": str(self.recordings), "bundled": bundled}

    @classmethod
    def from_environment(cls, recordings: Path | None = None, **kwargs: Any) -> VirusTotalSource:
        """Live when VT_API_KEY is set (against VT_BASE_URL), replayed otherwise."""
        return cls(
            api_key=os.environ.get("VT_API_KEY") or None,
            base_url=os.environ.get("VT_BASE_URL") or DEFAULT_VT_BASE_URL,
            recordings=recordings or bundled_recordings(),
            **kwargs,
        )


@dataclass(frozen=True)
class ReadRecords:
    """A run's records as read from its files, each named apart, and when the run started."""

    deliveries: list[Delivery]
    started: float

    @classmethod
    def checked(cls, read: list[Delivery], progress: Progress) -> ReadRecords:
        """The records read, with names a person can tell apart; the progress says how many there are and
        how many were refused as they were read."""
        records = cls(distinct_source_ids(read), time.monotonic())
        refused = records.refused
        progress(
            f"read {len(records.deliveries)} record(s)"
            + (f"; {refused} refused as read (the report says why)" if refused else "")
        )
        return records

    @property
    def refused(self) -> int:
        """How many records were refused as they were read (not text, not JSON, too large...)."""
        return sum(1 for delivery in self.deliveries if delivery.refused is not None)

    @property
    def none_to_queue(self) -> bool:
        """Whether every record was refused as it was read: the run then has nothing to start."""
        return bool(self.deliveries) and self.refused == len(self.deliveries)

    def refused_document(self, vt: VirusTotalSource) -> dict[str, Any]:
        """The document of a run none of whose records could be queued: each a failure, nothing else."""
        journeys = [
            (
                Journey(delivery=delivery, state="refused", reason=f"not queued: {delivery.refused}"),
                [Finding(where="")],
            )
            for delivery in self.deliveries
        ]
        settled = Settled(items={}, executions={}, queue_busy=False, waited_s=0.0)
        return self.document(vt, account(journeys, settled), vt_requests=0)

    def document(self, vt: VirusTotalSource, accounted: Account, *, vt_requests: int) -> dict[str, Any]:
        """The runner's JSON document (DESIGN.md, the local runner's contract)."""
        return {
            "cases": accounted.cases,
            "ignored": accounted.ignored,
            "pending": accounted.pending,
            "failures": accounted.failures,
            "stats": {
                "records": len(self.deliveries),
                "findings": accounted.findings,
                "records_without_findings": accounted.records_without_findings,
                "vt_requests": vt_requests,
                "vt_cache_hits": sum(1 for case in accounted.cases for ioc in case["iocs"] if ioc["cached"]),
                "duration_s": round(time.monotonic() - self.started, 3),
            },
            "virustotal": vt.describe(),
        }


def distinct_source_ids(deliveries: list[Delivery]) -> list[Delivery]:
    """The deliveries with ids a person can tell apart: printable, short, and numbered when one recurs
    (the same file given twice, or two files of the same name)."""
    seen: dict[str, int] = {}
    distinct: list[Delivery] = []
    for delivery in deliveries:
        source_id = _printable(delivery.source_id)
        seen[source_id] = seen.get(source_id, 0) + 1
        if seen[source_id] > 1:
            source_id = f"{source_id} ({seen[source_id]})"
        distinct.append(replace(delivery, source_id=source_id))
    return distinct


def _printable(text: str, limit: int = 200) -> str:
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[:limit] + "..."
