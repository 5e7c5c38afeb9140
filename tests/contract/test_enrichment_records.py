"""`EnrichmentRecords`: the ticket function reads back, from the enrichments table the enrich function's
cache writes, the enrichment each IOC of a case was judged on, else the last one kept of it; in memory and
on the template's table, alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, RETENTION, client, emptied
from vtriage.adapters.dynamodb import DynamoEnrichmentCache, DynamoEnrichmentRecords
from vtriage.fakes import InMemoryEnrichmentRecords
from vtriage.models import Enrichment, Ioc, IocOutcome, IocType, Verdict
from vtriage.ports import EnrichmentRecords

FRESHNESS = dict.fromkeys(Verdict, timedelta(hours=1))
Keep = list[Enrichment]
RecordsOf = Callable[[Keep], EnrichmentRecords]


@pytest.fixture
def records_of(implementation: str, request: pytest.FixtureRequest) -> RecordsOf:
    """Records holding the enrichments given, put in this order, as the enrich function's cache puts them."""

    def kept(enrichments: Keep) -> EnrichmentRecords:
        if implementation == IN_MEMORY:
            return InMemoryEnrichmentRecords(enrichments)
        aws = emptied(request.getfixturevalue("aws"), "EnrichmentsTable")
        dynamodb, table = client(aws, "dynamodb"), aws.ref("EnrichmentsTable")
        cache = DynamoEnrichmentCache(dynamodb, table, FRESHNESS, RETENTION, lambda: NOW)
        for enrichment in enrichments:
            cache.put([enrichment])
        return DynamoEnrichmentRecords(dynamodb, table)

    return kept


def _enrichment(value: str, engine: str, fetched_ago: timedelta = timedelta(0)) -> Enrichment:
    return Enrichment(
        ioc_type=IocType.DOMAIN,
        value=value,
        verdict=Verdict.MALICIOUS,
        reasons=[f"synthetic: flagged by {engine}"],
        context={"detections": [{"engine": engine, "category": "malicious", "result": "c2"}]},
        link=f"https://www.virustotal.com/gui/domain/{value}",
        fetched_at=NOW - fetched_ago,
    )


def _judged_on(enrichment: Enrichment) -> IocOutcome:
    """The IOC as its case keeps it, judged on this enrichment."""
    ioc = Ioc(type=enrichment.ioc_type, value=enrichment.value, found_at="detail.service.action")
    return IocOutcome.enriched(ioc, enrichment)


def test_each_ioc_reads_the_enrichment_it_was_judged_on(records_of: RecordsOf) -> None:
    # Given an IOC judged on a lookup two hours ago, looked up again since, and another IOC
    judged = _enrichment("tawuhoju.com", "first", fetched_ago=timedelta(hours=2))
    later = _enrichment("tawuhoju.com", "second")
    other = _enrichment("telemetry-sync.net", "third")
    records = records_of([judged, later, other])

    # When a case's IOCs are read back, with one never looked up
    skipped = IocOutcome(type=IocType.IP, value="10.0.1.25", found_at="x", skipped_reason="private address")
    found = records.as_judged([_judged_on(judged), _judged_on(other), skipped])

    # Then each looked-up IOC has the enrichment it was judged on, whole, and the skipped one none
    assert found == {judged.key: judged, other.key: other}


def test_an_ioc_whose_lookup_is_gone_reads_the_last_one_kept(records_of: RecordsOf) -> None:
    # Given an IOC whose lookup the case was judged on is no longer kept, but a later one is
    gone = _enrichment("tawuhoju.com", "first", fetched_ago=timedelta(days=1))
    later = _enrichment("tawuhoju.com", "second")
    records = records_of([later])

    # When it is read back, Then the later lookup answers; an IOC never kept is absent
    never = _enrichment("example.org", "none")
    assert records.as_judged([_judged_on(gone), _judged_on(never)]) == {later.key: later}
