"""What the local runner holds in memory at its end, when it reads the cases table to account for the run:
every item, read a small page at a time, one page held at once (`vtriage run`'s peak resident set on 500
alerts is reached there)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.factories import make_alert, make_case
from vtriage.adapters.dynamodb import DynamoCaseRepository, from_item
from vtriage.models import Action, ActionStatus, ActionType, CaseStatus, IocOutcome, IocType, Verdict
from vtriage_local.runner import Pipeline
from vtriage_local.stack import LocalAws

CASES = 240


def _saved_cases(aws: LocalAws, count: int) -> None:
    """Cases as a C&C triage leaves them (an IOC with its reasons, three dry-run actions), saved as the
    pipeline saves them."""
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    repository = DynamoCaseRepository(
        aws.client("dynamodb"), aws.ref("CasesTable"), timedelta(days=90), lambda: now
    )
    for index in range(count):
        instance = f"i-0{index:016x}"
        alert = make_alert(id=f"finding-{index:04d}", title=f"C&C server queried by {instance}")
        domain = f"synthetic-c2-{index % 40:03d}.example-bench.net"
        iocs = [
            IocOutcome(
                type=IocType.DOMAIN,
                value=domain,
                found_at="service.action.dnsRequestAction.domain",
                verdict=Verdict.MALICIOUS,
                malicious=4,
                total=91,
                reasons=[
                    "malicious [engine-count]: 4 of 91 engines flag it as malicious (domain threshold 3)",
                    "trusted engines flagging it as malicious: Fortinet, Kaspersky",
                ],
                link=f"https://www.virustotal.com/gui/domain/{domain}",
            )
        ]
        actions = [
            Action(
                type=kind,
                target=instance,
                status=ActionStatus.DRY_RUN,
                detail=f"dry run, nothing changed: would {kind.value} {instance}",
                before={"volumes": {"vol-0123456789abcdef0": "/dev/sda1"}},
                account=alert.account,
                region=alert.region,
            )
            for kind in (ActionType.SNAPSHOT_VOLUMES, ActionType.TAG_INSTANCE, ActionType.ISOLATE_INSTANCE)
        ]
        repository.save(
            make_case(
                alert, status=CaseStatus.TICKETED, verdict=Verdict.MALICIOUS, iocs=iocs, actions=actions
            )
        )


def _read_through_botocore_s_paginator(pipeline: Pipeline, page_items: int) -> dict[str, dict[str, Any]]:
    """The table read as a botocore paginator reads it: the reference for what is read."""
    pages = pipeline.dynamodb.get_paginator("scan").paginate(
        TableName=pipeline.table, ConsistentRead=True, PaginationConfig={"PageSize": page_items}
    )
    return {str(item["case_id"]["S"]): from_item(item) for page in pages for item in page["Items"]}


def _held_beyond_what_is_read(read: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """What `read()` returns, and the most memory it held at once beyond what it returns (bytes)."""
    tracemalloc.start()
    try:
        items = read()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return items, peak - kept


def test_the_cases_table_is_read_whole_a_small_page_at_a_time(local_aws: LocalAws) -> None:
    # Given 240 cases as a C&C triage leaves them in the cases table
    _saved_cases(local_aws, CASES)
    pipeline = Pipeline(local_aws)
    # When the runner reads the table at its end
    items, held = _held_beyond_what_is_read(pipeline._table_items)
    # Then it read every case as a scan reads it
    assert len(items) == CASES
    assert items == _read_through_botocore_s_paginator(pipeline, page_items=1000)
    # and held less beyond them than botocore's paginator does with pages of 100 cases, which keeps the
    # page it gave while it reads the next (as the runner did: 8 MB of a 500-alert run's peak)
    _, held_by_the_paginator = _held_beyond_what_is_read(
        lambda: _read_through_botocore_s_paginator(pipeline, page_items=100)
    )
    assert held < held_by_the_paginator / 3
