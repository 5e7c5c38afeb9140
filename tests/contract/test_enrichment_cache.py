"""`EnrichmentCache`: the in-memory cache and the DynamoDB one on the template's enrichments table answer
the same IOCs, marked as cached, while each enrichment is fresh for its verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.contract.conftest import IN_MEMORY, NOW, RETENTION, Clock, client, emptied
from vtriage.adapters.dynamodb import DynamoEnrichmentCache
from vtriage.fakes import InMemoryEnrichmentCache
from vtriage.models import Enrichment, Ioc, IocType, Verdict
from vtriage.ports import EnrichmentCache

# As a deployment sets it: a malicious verdict answers for a day, any other for an hour.
FRESHNESS = {verdict: timedelta(hours=1) for verdict in Verdict} | {Verdict.MALICIOUS: timedelta(days=1)}


@pytest.fixture
def cache(implementation: str, request: pytest.FixtureRequest, clock: Clock) -> EnrichmentCache:
    if implementation == IN_MEMORY:
        return InMemoryEnrichmentCache(FRESHNESS, clock)
    aws = emptied(request.getfixturevalue("aws"), "EnrichmentsTable")
    return DynamoEnrichmentCache(
        client(aws, "dynamodb"), aws.ref("EnrichmentsTable"), FRESHNESS, RETENTION, clock
    )


def _ioc(value: str, ioc_type: IocType = IocType.DOMAIN) -> Ioc:
    return Ioc(type=ioc_type, value=value, found_at="detail.service.action.dnsRequestAction.domain")


def _enrichment(ioc: Ioc, verdict: Verdict, fetched_ago: timedelta = timedelta(0)) -> Enrichment:
    return Enrichment(
        ioc_type=ioc.type,
        value=ioc.value,
        verdict=verdict,
        reasons=[f"synthetic: {verdict.value}"],
        link=f"https://www.virustotal.com/gui/domain/{ioc.value}",
        fetched_at=NOW - fetched_ago,
    )


def test_the_enrichments_put_answer_their_iocs_marked_as_cached(cache: EnrichmentCache) -> None:
    # Given enrichments of two IOCs put in one write
    bad, good, unknown = _ioc("tawuhoju.com"), _ioc("198.51.100.7", IocType.IP), _ioc("example.org")
    kept = [_enrichment(bad, Verdict.MALICIOUS), _enrichment(good, Verdict.HARMLESS)]
    cache.put(kept)

    # When the three IOCs are asked for at once
    fresh = cache.get_fresh([bad, good, unknown])

    # Then the two put answer as they were put, marked as cached, and the third is absent
    assert fresh == {enrichment.key: enrichment.model_copy(update={"cached": True}) for enrichment in kept}


def test_an_enrichment_answers_only_while_fresh_for_its_verdict(cache: EnrichmentCache, clock: Clock) -> None:
    # Given a malicious and a harmless enrichment fetched now
    bad, good = _ioc("tawuhoju.com"), _ioc("example.com")
    cache.put([_enrichment(bad, Verdict.MALICIOUS), _enrichment(good, Verdict.HARMLESS)])

    # When two hours pass
    clock.advance(timedelta(hours=2))
    fresh = cache.get_fresh([bad, good])

    # Then the malicious one (fresh for a day) still answers, the harmless one (an hour) no longer
    assert list(fresh) == [bad.key]

    # And a day later neither does
    clock.advance(timedelta(days=1))
    assert cache.get_fresh([bad, good]) == {}


def test_the_enrichment_put_last_for_an_ioc_is_the_one_that_answers(cache: EnrichmentCache) -> None:
    # Given an IOC put harmless, then put again malicious by a lookup that started earlier
    ioc = _ioc("telemetry-sync.net")
    cache.put([_enrichment(ioc, Verdict.HARMLESS, fetched_ago=timedelta(minutes=1))])
    cache.put([_enrichment(ioc, Verdict.MALICIOUS, fetched_ago=timedelta(minutes=2))])

    # When it is asked for, Then the last put answers
    assert cache.get_fresh([ioc])[ioc.key].verdict is Verdict.MALICIOUS
