"""Runs alert files through the whole pipeline on a local AWS: the queue, the real enrich handler,
VirusTotal (live or replayed), DynamoDB, and the real state machine with the real task handlers."""

from __future__ import annotations

import atexit
import functools
import gc
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import IO, Any
from unittest import mock

import requests.adapters
from botocore.exceptions import BotoCoreError, ClientError

from vtriage.adapters.dynamodb import failure_key, from_item
from vtriage.config.enrich import EnrichSettings
from vtriage.display import one_line
from vtriage.errors import ConfigurationError
from vtriage.intake import IntakeOptions
from vtriage.models import ActionStatus, Alert, ResourceType
from vtriage_local.accounting import (
    Execution,
    Journey,
    Settled,
    account,
    execution_case_id,
    findings_in,
)
from vtriage_local.alert_files import Delivery, read_deliveries
from vtriage_local.moto_memory import one_malloc_arena
from vtriage_local.preflight import DEFERRED_WAIT_S, Progress, ReadRecords, VirusTotalSource, nobody_watches
from vtriage_local.replay import ReplayServer
from vtriage_local.seed import (
    Mirrored,
    alerts_by_place,
    instances_named,
    resources_named,
    seed_access_keys,
    seed_instances,
    seed_s3_objects,
    unmirrorable,
)
from vtriage_local.stack import ACCOUNT_ID, REGION, LocalAws, LocalSetupError
from vtriage_local.terminal import cut

__all__ = ["Pipeline", "Progress", "VirusTotalSource", "run_deliveries", "run_files", "run_records"]


ALERT_QUEUE = "AlertQueue"
PUSHED_ALERT_QUEUE = "PushedAlertQueue"
DEAD_LETTER_QUEUE = "AlertDeadLetterQueue"
ENRICH_FUNCTION = "EnrichFunction"
CASES_TABLE = "CasesTable"
_SOURCE_ID_ATTRIBUTE = "vtriage_source_message_id"
# Ties a re-queued copy of a deferred record to the delivery it came from.
_DELIVERY_ATTRIBUTE = "vtriage_local_delivery"
_SQS_MAX_MESSAGE_BYTES = 262_144
_EXECUTION_WAIT_S = 120.0
# How long the running executions stay the same before the runner asks whether they all wait for a person
# (their histories and cases are read then, not every poll).
_UNCHANGED_RUNNING_S = 1.0
# BatchGetItem's most keys a request.
_BATCH_GET_KEYS = 100
_SCAN_PAGE_ITEMS = 25
_DEFERRED_POLL_S = 0.5
# How often the progress tells of the cases that finished while records are being handled.
_WATCH_S = 1.0
# The queue attributes that count records deferred (delayed or hidden) rather than gone.
_WAITING_MESSAGES = ["ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"]
# Answers from this machine (the replay server, a stand-in on loopback) cost no VirusTotal quota: the
# quota is a premium key's, not the template's free one, whose 4 a minute would defer most records.
REPLAY_QUOTA = {"VirusTotalQuotaPerMinute": "10000", "VirusTotalQuotaPerDay": "1000000"}


@contextmanager
def counting_requests_to(base_url: str) -> Iterator[list[int]]:
    """Counts every HTTP request sent under base_url through `requests`, retries included."""
    counter = [0]
    original = requests.adapters.HTTPAdapter.send

    def send(adapter: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        if str(request.url).startswith(base_url):
            counter[0] += 1
        return original(adapter, request, *args, **kwargs)

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", send):
        yield counter


class Pipeline:
    """The local pipeline, shared by every file of one run so a repeat meets the earlier records."""

    def __init__(
        self, aws: LocalAws, progress: Progress = nobody_watches, *, set_aside_between_batches: bool = False
    ) -> None:
        """`set_aside_between_batches`: drain collects garbage between batches and sets what is still alive
        aside from later collections (_set_aside_what_lives_on); whoever asks gives it back to the collector
        (gc.unfreeze) once the run is over, as run_records does."""
        self.aws = aws
        self.progress = progress
        self._set_aside = set_aside_between_batches
        self._finished_reported: set[str] = set()
        self.sqs = aws.client("sqs")
        self.dynamodb = aws.client("dynamodb")
        self.sfn = aws.client("stepfunctions")
        self.queue_url = aws.ref(ALERT_QUEUE)
        # The enrich function reads both queues; the ARN on each record tells it the record's channel.
        self.queue_arns = {
            aws.ref(queue): aws.get_att(queue, "Arn") for queue in (ALERT_QUEUE, PUSHED_ALERT_QUEUE)
        }
        self.dlq_url = aws.ref(DEAD_LETTER_QUEUE)
        self.table = aws.ref(CASES_TABLE)
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy", "MaximumMessageSize"]
        ).get("Attributes", {})
        redrive = json.loads(attributes.get("RedrivePolicy", '{"maxReceiveCount": 1}'))
        self.max_receives = int(redrive["maxReceiveCount"])
        self.max_message_bytes = int(attributes.get("MaximumMessageSize", _SQS_MAX_MESSAGE_BYTES))
        self.batch_size = _batch_size(aws)
        self.journeys: list[Journey] = []
        self._journey_of: dict[str, Journey] = {}
        # Why the enrich function handed back each record of its last batch to be retried, or deferred it
        # (a quota spent, a key refused), as it logged it; and the records whose last delivery it deferred,
        # which are not handled yet, whether hidden on their queue or queued again as a fresh message.
        self._retried: list[str] = []
        self._deferred: list[str] = []
        self._deferred_journeys: set[int] = set()

    def enqueue(self, delivery: Delivery) -> Journey:
        """Queue a record on the detector rules' queue, as EventBridge would; one SQS cannot carry is
        refused, as SQS does."""
        journey = Journey(delivery=delivery)
        self.journeys.append(journey)
        refusal = delivery.refused or self._queue_refusal(delivery.body)
        if refusal is not None:
            journey.state, journey.reason = "refused", f"not queued: {refusal}"
            return journey
        token = str(uuid.uuid4())
        try:
            message_id = self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=delivery.body,
                MessageAttributes={
                    _SOURCE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": delivery.source_id},
                    _DELIVERY_ATTRIBUTE: {"DataType": "String", "StringValue": token},
                },
            )["MessageId"]
        except ClientError as error:
            journey.state, journey.reason = "refused", f"not queued: SQS refused it ({error})"
            return journey
        journey.message_ids.append(message_id)
        self._journey_of[token] = journey
        return journey

    def _queue_refusal(self, body: str) -> str | None:
        """Why SQS would not take this body (moto is more lenient than SQS), or None."""
        if not body:
            return "the body is empty, and SQS takes no empty message"
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError as error:
            return (
                f"the body holds U+{ord(body[error.start]):04X} (a lone surrogate) at offset {error.start},"
                " which cannot be sent as UTF-8"
            )
        if size > self.max_message_bytes:
            return f"the body is {size} bytes; the alert queue takes at most {self.max_message_bytes}"
        return None

    def drain(self, wait_s: float = DEFERRED_WAIT_S) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Deliver the records of both queues (the detector rules' and the pushed alerts') to the enrich
        handler in batches, as their event source mappings do, redelivering failed ones until the redrive
        policy parks them, and waiting up to `wait_s` for the ones deferred until the VirusTotal quota
        reopens. Returns the records acknowledged without a failure record, and the failures
        (dead-lettered, or rejected with a failure record)."""
        outcomes: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        deadline = time.monotonic() + wait_s
        self._between_batches()
        with self._watching_cases():
            while True:
                received = False
                for queue_url in self.queue_arns:
                    messages = self.sqs.receive_message(
                        QueueUrl=queue_url,
                        MaxNumberOfMessages=self.batch_size,
                        MessageAttributeNames=["All"],
                        AttributeNames=["All"],
                    ).get("Messages", [])
                    if messages:
                        received = True
                        self._deliver(queue_url, messages, outcomes, failures)
                        self._report_records()
                        self._between_batches()
                if not received:
                    if self.busy() and time.monotonic() < deadline:
                        # Records the enrich function deferred until the VirusTotal quota reopens come back.
                        time.sleep(_DEFERRED_POLL_S)
                        continue
                    break
        return outcomes, failures

    def _between_batches(self) -> None:
        if self._set_aside:
            _set_aside_what_lives_on()

    @contextmanager
    def _watching_cases(self) -> Iterator[None]:
        """Tell of each case as it finishes while the enrich function works: one record of a hundred
        findings is one long invocation, during which their executions start and finish."""
        if self.progress is nobody_watches:
            yield
            return
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(_WATCH_S):
                try:
                    self._report_finished(self._executions())
                except (BotoCoreError, ClientError):
                    continue  # progress only: the settled run says everything

        watcher = threading.Thread(target=watch, name="vtriage-run-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()

    def _deliver(
        self,
        queue_url: str,
        messages: list[dict[str, Any]],
        outcomes: list[dict[str, Any]],
        failures: list[dict[str, str]],
    ) -> None:
        """One batch of a queue through the enrich handler, and what the event source mapping and the
        redrive policy then do with each record."""
        failed, logged = self._invoke(messages, queue_url)
        retry_reasons = logged.reasons
        self._retried = []
        self._deferred = list(logged.deferrals.values())
        for message in messages:
            if message["MessageId"] in logged.deferrals:
                self._deferred_journeys.add(id(self._journey(message)))
            else:
                self._deferred_journeys.discard(id(self._journey(message)))
        acknowledged: list[tuple[str, str]] = []
        for message in messages:
            journey = self._journey(message)
            source_id = journey.delivery.source_id
            if message["MessageId"] in failed:
                receives = int(message["Attributes"].get("ApproximateReceiveCount", "1"))
                retry_reason = retry_reasons.get(message["MessageId"])
                if receives >= self.max_receives:
                    # What SQS does past maxReceiveCount: the record moves to the dead-letter queue.
                    self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=message["Body"])
                    self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                    journey.state = "dead_lettered"
                    why = f"last error: {retry_reason}" if retry_reason else failed[message["MessageId"]]
                    journey.reason = (
                        f"the enrich function failed on it {receives} times; moved to the "
                        f"dead-letter queue ({why})"
                    )
                    failures.append({"message_id": source_id, "reason": journey.reason})
                else:
                    # A deferred record is handed back too, without a retry reason: its case says why.
                    journey.reason = f"being retried: {retry_reason}" if retry_reason else ""
                    if retry_reason:
                        self._retried.append(retry_reason)
                    self.sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                continue
            self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            journey.state = "acknowledged"
            journey.reason = ""
            acknowledged.append((source_id, message["MessageId"]))
        # The failure records of the batch's acknowledged records, in one read.
        recorded = self.failure_records([message_id for _, message_id in acknowledged])
        for source_id, message_id in acknowledged:
            failure = recorded.get(message_id)
            if failure is not None:
                failures.append({"message_id": source_id, "reason": str(failure["reason"])})
            else:
                outcomes.append({"message_id": source_id, "queue_message_id": message_id})

    def _invoke(self, messages: list[dict[str, Any]], queue_url: str) -> tuple[dict[str, str], _RetryReasons]:
        """Hand a batch of one queue to the enrich function; the ids of the records it failed, each with
        what is known of why, and what it logged of each record it hands back to be retried or defers (by
        SQS id). A function that raises fails the whole batch, as Lambda's event source mapping sees it."""
        queue_arn = self.queue_arns[queue_url]
        event = {"Records": [_lambda_record(message, queue_arn) for message in messages]}
        logged = _RetryReasons()
        # Every logger of the functions propagates to the root one, whatever its name.
        logging.getLogger().addHandler(logged)
        try:
            response = self.aws.invoke(ENRICH_FUNCTION, event)
        except Exception as error:  # the function's fault, reported on its records; never the runner's
            why = f"the whole batch failed: {type(error).__name__}"
            return {message["MessageId"]: why for message in messages}, logged
        finally:
            logging.getLogger().removeHandler(logged)
        failed = response.get("batchItemFailures", []) if isinstance(response, dict) else []
        failures = {str(item["itemIdentifier"]): "see the function log for the error" for item in failed}
        return failures, logged

    def _journey(self, message: dict[str, Any]) -> Journey:
        """The delivery a received message carries (a deferred copy carries its delivery's attributes)."""
        attributes = message.get("MessageAttributes", {})
        token = attributes.get(_DELIVERY_ATTRIBUTE, {}).get("StringValue") or message["MessageId"]
        journey = self._journey_of.get(token)
        if journey is None:
            # Queued by someone else than the runner (the intake function, a test).
            source_id = attributes.get(_SOURCE_ID_ATTRIBUTE, {}).get("StringValue", "")
            journey = Journey(delivery=Delivery(source_id=source_id, body=message["Body"]))
            self.journeys.append(journey)
            self._journey_of[token] = journey
        if message["MessageId"] not in journey.message_ids:
            journey.message_ids.append(message["MessageId"])
        return journey

    def busy(self) -> bool:
        """True while records are delayed or hidden in a queue: deferred until the quota reopens."""
        for queue_url in self.queue_arns:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=_WAITING_MESSAGES
            ).get("Attributes", {})
            if any(int(value) > 0 for value in attributes.values()):
                return True
        return False

    def failure_records(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The failure records the enrich function left for rejected messages, by message id."""
        found: dict[str, dict[str, Any]] = {}
        wanted = {failure_key(message_id): message_id for message_id in message_ids}
        keys = [{"case_id": {"S": key}} for key in wanted]
        for start in range(0, len(keys), _BATCH_GET_KEYS):
            request = {self.table: {"Keys": keys[start : start + _BATCH_GET_KEYS], "ConsistentRead": True}}
            while request:
                response = self.dynamodb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    document = from_item(item)
                    found[wanted[str(document["case_id"])]] = document
                request = response.get("UnprocessedKeys") or {}
        return found

    def case(self, case_id: str) -> dict[str, Any] | None:
        """A case as stored."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def settle(self, waited_s: float) -> Settled:
        """The local AWS once every execution of the run has finished (or the wait for them ran out)."""
        executions = self._finished_executions()
        items = self._table_items()
        for name, execution in executions.items():
            if not isinstance(items.get(name, {}).get("alert"), dict):
                # A folded repeat's execution, named after the repeat: its input names the case.
                described = self.sfn.describe_execution(executionArn=execution.arn)
                executions[name] = replace(execution, case_id=execution_case_id(described.get("input", "")))
        return Settled(items=items, executions=executions, queue_busy=self.busy(), waited_s=waited_s)

    def _report_records(self) -> None:
        handled = sum(
            1
            for journey in self.journeys
            if journey.state in {"acknowledged", "dead_lettered"}
            and id(journey) not in self._deferred_journeys
        )
        queued = sum(1 for journey in self.journeys if journey.state != "refused")
        said = _counted_reasons("to retry", self._retried) + _counted_reasons("deferred", self._deferred)
        self.progress(f"enrich function: {handled} of {queued} record(s) handled{said}")

    def _report_finished(self, executions: dict[str, Execution]) -> None:
        """Tell of each execution that finished since the last time: its case as it now stands."""
        if self.progress is nobody_watches:
            return
        finished = [
            execution
            for execution in sorted(executions.values(), key=lambda execution: execution.started)
            if execution.status != "RUNNING" and execution.name not in self._finished_reported
        ]
        for execution in finished:
            self._finished_reported.add(execution.name)
            stored = self.case(execution.name) or {}
            counted = f"{len(self._finished_reported)} (of {len(executions)} started)"
            if not isinstance(stored.get("alert"), dict):
                # Named after a repeat, folded into an earlier case: the run's end says which.
                self.progress(f"execution {counted} {execution.status}: a repeat folded into its case")
                continue
            title = cut(one_line(stored["alert"].get("title") or stored["alert"].get("type", "")), 50)
            self.progress(
                f"case {counted} {execution.status}: {stored.get('verdict')}, {stored.get('branch') or '-'}, "
                f"{stored.get('status')}: {title}"
            )

    def _finished_executions(self) -> dict[str, Execution]:
        """Every execution of the run once none is RUNNING but those waiting for a person's approval, which
        nobody gives in a local run (or once _EXECUTION_WAIT_S has passed); those are marked so."""
        deadline = time.monotonic() + _EXECUTION_WAIT_S
        # An approval wait shorter than the runner's own ends by itself (escalated to the ticket): then the
        # runner waits for it as for any execution.
        approval_timeout_s = float(self.aws.parameters.get("ApprovalTimeoutSeconds") or "inf")
        stops_for_approvals = approval_timeout_s >= _EXECUTION_WAIT_S
        running: set[str] = set()
        unchanged_since = time.monotonic()
        while True:
            executions = self._executions()
            self._report_finished(executions)
            now_running = {name for name, execution in executions.items() if execution.status == "RUNNING"}
            now = time.monotonic()
            if now_running != running:
                running, unchanged_since = now_running, now
            if not running:
                return executions
            if (stops_for_approvals and now - unchanged_since >= _UNCHANGED_RUNNING_S) or now > deadline:
                waiting = {name for name in running if self._waits_for_approval(executions[name])}
                if waiting == running or now > deadline:
                    if waiting:
                        self.progress(
                            f"{len(waiting)} execution(s) wait for a person's approval, which nobody "
                            "gives in a local run: not waiting for them"
                        )
                    return {
                        name: replace(execution, waiting_for_approval=name in waiting)
                        for name, execution in executions.items()
                    }
                unchanged_since = now  # some still work: asked again a second later
            time.sleep(0.05)

    def _waits_for_approval(self, execution: Execution) -> bool:
        """Whether the execution waits for a person: its latest event hands a task token out (the
        approval wait's `waitForTaskToken` task, submitted) and its case has an action waiting for approval.
        The case alone is not enough: the plan marks the actions before those needing no person have run
        and before the ticket is opened."""
        events = self.sfn.get_execution_history(
            executionArn=execution.arn, reverseOrder=True, maxResults=1
        ).get("events", [])
        # moto answers the whole history, oldest first, whatever is asked: the latest has the highest id.
        latest = max(events, key=lambda event: int(event["id"]), default=None)
        if latest is None or latest["type"] != "TaskSubmitted":
            return False
        resource = str(latest.get("taskSubmittedEventDetails", {}).get("resource", ""))
        if not resource.endswith(".waitForTaskToken"):
            return False
        stored = self.case(execution.name) or {}
        if not isinstance(stored.get("alert"), dict):
            # A folded repeat's execution, named after the repeat: its input names the case.
            described = self.sfn.describe_execution(executionArn=execution.arn)
            case_id = execution_case_id(described.get("input", ""))
            stored = (self.case(case_id) if case_id else None) or {}
        waiting = ActionStatus.PENDING_APPROVAL.value
        return any(action.get("status") == waiting for action in stored.get("actions", []))

    def _executions(self) -> dict[str, Execution]:
        """Every execution of the triage state machine, page by page."""
        found: dict[str, Execution] = {}
        pages = self.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.aws.ref("TriageStateMachine")
        )
        for page in pages:
            for execution in page.get("executions", []):
                found[execution["name"]] = Execution(
                    name=execution["name"],
                    arn=execution["executionArn"],
                    status=execution["status"],
                    started=execution["startDate"],
                )
        return found

    def _table_items(self) -> dict[str, dict[str, Any]]:
        """Every item of the cases table, page by page: cases, repeat keys and failure records."""
        items: dict[str, dict[str, Any]] = {}
        # Small pages, one held at a time: moto copies each item of a page and botocore reads its answer
        # whole (some 40 kB a case of 5 kB), and botocore's paginator still holds a page while it asks
        # for the next. Reading a 500-alert run's 1,500 items held 7.9 MB beyond them through the
        # paginator with pages of 100 (pages of 1 MB, moto's limit, 12 MB of the run's peak resident
        # set), 0.6 MB with pages of 25 one at a time, in the same time.
        request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True, "Limit": _SCAN_PAGE_ITEMS}
        while True:
            page = self.dynamodb.scan(**request)
            for item in page.get("Items", []):
                document = from_item(item)
                items[str(document["case_id"])] = document
            start = page.get("LastEvaluatedKey")
            del page
            if not start:
                return items
            request["ExclusiveStartKey"] = start


def _batch_size(aws: LocalAws) -> int:
    events = aws.template["Resources"][ENRICH_FUNCTION]["Properties"].get("Events", {})
    for event in events.values():
        if event.get("Type") == "SQS":
            return int(event.get("Properties", {}).get("BatchSize", 10))
    return 10


def _lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message of the queue `queue_arn` as Lambda's event source mapping hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "dataType": value.get("DataType", "String"),
                "stringListValues": [],
                "binaryListValues": [],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def run_files(
    paths: list[Path],
    vt: VirusTotalSource,
    log_stream: IO[str],
    template_path: Path | None = None,
    parameters: dict[str, str] | None = None,
    *,
    deferred_wait_s: float = DEFERRED_WAIT_S,
    progress: Progress = nobody_watches,
) -> dict[str, Any]:
    """Run every file through one local pipeline; return the runner's JSON document, in which every
    finding of every record stands exactly once (a case, a repeat, ignored, pending or a failure)."""
    return run_deliveries(
        [delivery for path in paths for delivery in read_deliveries(path)],
        vt,
        log_stream,
        template_path,
        parameters,
        deferred_wait_s=deferred_wait_s,
        progress=progress,
    )


def run_deliveries(
    read: list[Delivery],
    vt: VirusTotalSource,
    log_stream: IO[str],
    template_path: Path | None = None,
    parameters: dict[str, str] | None = None,
    *,
    deferred_wait_s: float = DEFERRED_WAIT_S,
    progress: Progress = nobody_watches,
) -> dict[str, Any]:
    """Run the records read from alert files through one local pipeline; return the runner's JSON
    document. When every record was refused as it was read (none is JSON, say), nothing is started."""
    records = ReadRecords.checked(read, progress)
    if records.none_to_queue:
        return records.refused_document(vt)
    return run_records(
        records,
        vt,
        log_stream,
        template_path,
        parameters,
        deferred_wait_s=deferred_wait_s,
        progress=progress,
    )


def run_records(
    records: ReadRecords,
    vt: VirusTotalSource,
    log_stream: IO[str],
    template_path: Path | None = None,
    parameters: dict[str, str] | None = None,
    *,
    deferred_wait_s: float = DEFERRED_WAIT_S,
    progress: Progress = nobody_watches,
) -> dict[str, Any]:
    """Run records read and checked (`ReadRecords.checked`) through one local pipeline: the replay server
    (unless VirusTotal is live), the stack built from the template, every record queued; return the
    runner's JSON document."""
    deliveries = records.deliveries
    _no_collection_at_exit()
    # Before the replay server's and moto's threads start (see one_malloc_arena).
    one_malloc_arena()
    replay = None
    if vt.api_key is None:
        progress(f"starting the VirusTotal replay server (recordings: {vt.recordings})")
        try:
            replay = ReplayServer(
                vt.recordings,
                api_key="local-replay-key",
                latency_ms=vt.latency_ms,
                faults=vt.faults,
                seed=vt.seed,
            )
        except ValueError as error:
            raise LocalSetupError(f"the VirusTotal replay server cannot start: {error}") from None
        replay.start()
    else:
        on_this_machine = "; on this machine, so no VirusTotal quota is applied" if vt.on_this_machine else ""
        progress(f"VirusTotal is live: {vt.base_url} (VT_API_KEY is set){on_this_machine}")
    base_url = replay.base_url if replay else vt.base_url
    previous_base = os.environ.get("VT_BASE_URL")
    os.environ["VT_BASE_URL"] = base_url
    try:
        stack_kwargs: dict[str, Any] = {
            "vt_api_key": vt.api_key or "local-replay-key",
            "parameters": (REPLAY_QUOTA if vt.on_this_machine else {}) | (parameters or {}),
        }
        if template_path is not None:
            stack_kwargs["template_path"] = template_path
        # Handlers log JSON lines to stdout, as in Lambda; here they go to the log stream so that
        # stdout carries only the runner's own output.
        progress("building the stack from template.yaml on a local AWS (moto)")
        with (
            redirect_stdout(log_stream),
            LocalAws(**stack_kwargs) as aws,
            counting_requests_to(base_url) as sent,
        ):
            pipeline = Pipeline(aws, progress, set_aside_between_batches=True)
            intake = _deployed_intake()
            findings = [findings_in(delivery.body, intake) for delivery in deliveries]
            alerts = [finding.alert for found in findings for finding in found if finding.alert is not None]
            # What the member accounts' StackSet deploys, then the resources the findings name.
            for note in aws.organisation_notes():
                progress(note)
            aws.deploy_member_roles()
            progress("mirroring the resources the findings name (instances, access keys, S3 objects)")
            mirror_resources(aws, alerts, log_stream)
            journeys = [pipeline.enqueue(delivery) for delivery in deliveries]
            progress(f"queued {sum(1 for journey in journeys if journey.state != 'refused')} record(s)")
            pipeline.drain(deferred_wait_s)
            progress("waiting for the triage executions to finish")
            settled = pipeline.settle(waited_s=deferred_wait_s)
            accounted = account(list(zip(journeys, findings, strict=True)), settled)
    finally:
        # What was set aside is collected again as any object: the process may run on (a test's).
        gc.unfreeze()
        if replay is not None:
            replay.stop()
        if previous_base is None:
            os.environ.pop("VT_BASE_URL", None)
        else:
            os.environ["VT_BASE_URL"] = previous_base
    return records.document(vt, accounted, vt_requests=sent[0])


def _counted_reasons(what: str, reasons: list[str]) -> str:
    """'; 2 to retry: VirusTotal unavailable (HTTP 500, 4 attempts)', the reasons counted, the three most
    frequent named; '' when there are none."""
    if not reasons:
        return ""
    counted = Counter(reasons).most_common()
    if len(counted) == 1:
        return f"; {len(reasons)} {what}: {cut(one_line(counted[0][0]), 120)}"
    shown = ", ".join(f"{count} {cut(one_line(reason), 60)}" for reason, count in counted[:3])
    more = f" and {len(counted) - 3} other reason(s)" if len(counted) > 3 else ""
    return f"; {len(reasons)} {what}: {shown}{more}"


class _RetryReasons(logging.Handler):
    """What the enrich function logs of each record it hands back to be retried (`retry_reason`, by SQS
    message id), and of each it defers (its `reason`: a quota spent, a key refused): the runner says it
    where a person reads the run, as an operator reads the function's log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: dict[str, str] = {}
        self.deferrals: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # Powertools filters its service's records out of every root handler there is when a function's
        # logger is first set up (to print them once): this one prints nothing, and needs them.
        return True

    def emit(self, record: logging.LogRecord) -> None:
        message_id = getattr(record, "message_id", None)
        if not isinstance(message_id, str):
            return
        reason = getattr(record, "retry_reason", None)
        if isinstance(reason, str):
            self.reasons[message_id] = reason
        deferral = getattr(record, "reason", None)
        if isinstance(deferral, str) and str(record.msg).startswith("record deferred"):
            self.deferrals[message_id] = deferral


def _set_aside_what_lives_on() -> None:
    """Collect the garbage made so far, then set what is still alive aside from the collections to come
    (gc.freeze): what moto holds (tables, executions, instances) and the models loaded stay alive for the
    whole run, and each full collection walked all of it again, hundreds of thousands of objects: 2.5 s
    of a 100-alert run and 11 s of a 500-alert one. Called between batches, each collection walks only
    what the last batch made; garbage is collected as soon, and the 500-alert run's peak resident set
    went down with it (507 MB to 386 MB)."""
    gc.collect()
    gc.freeze()


@functools.cache
def _no_collection_at_exit() -> None:
    """Spare the interpreter's last garbage collection at exit: moto keeps what the run made (its
    backends live in its modules until the process ends, some 600,000 objects after 100 alerts), and
    walking them all for cycles to free at exit took 4 s of a 20 s `vtriage run`. The memory goes back
    to the system with the process all the same."""
    atexit.register(gc.freeze)


def _deployed_intake() -> IntakeOptions:
    """How the local enrich function reads records: its settings, from the environment the stack set."""
    try:
        return EnrichSettings.from_environ().intake
    except ConfigurationError as error:
        raise LocalSetupError(f"the enrich function's settings are invalid: {error}") from None


def mirror_resources(aws: LocalAws, alerts: list[Alert], log_stream: IO[str]) -> None:
    """Mirror the instances, access keys and S3 objects the alerts name, each in its finding's own account and
    Region (moto keeps one backend per account and Region): the deployment's, a member account's or any
    other, as the world the finding describes; whether vtriage may act there is the pipeline's to decide.
    What cannot be mirrored is said in the log and left out (remediation then reports it missing)."""
    for (account_id, region), named in alerts_by_place(alerts).items():
        left_out: list[str]
        problem = unmirrorable(account_id, region)
        if problem is not None:
            left_out = [f"{problem}: nothing it names is mirrored"]
        else:
            try:
                instances = seed_instances(aws.client("ec2", region, account_id), instances_named(named))
                keys = seed_access_keys(
                    aws.client("iam", region, account_id), resources_named(named, ResourceType.ACCESS_KEY)
                )
                # The quarantine moves objects of the deployment's own buckets only (IAM holds it so).
                objects = (
                    seed_s3_objects(
                        aws.client("s3", region, account_id),
                        region,
                        resources_named(named, ResourceType.S3_OBJECT),
                        aws.parameters.get("QuarantineBucket", ""),
                    )
                    if account_id == ACCOUNT_ID
                    else Mirrored()
                )
            except (BotoCoreError, ClientError) as error:
                left_out = [f"account {account_id}, Region {region}: {error}"]
            else:
                left_out = [*instances.left_out, *keys.left_out, *objects.left_out]
                if instances.created or keys.created or objects.created:
                    mirrored = {
                        "level": "INFO",
                        "message": "resources mirrored locally",
                        "account": account_id,
                        "region": region,
                        "created": [*instances.created, *keys.created, *objects.created],
                    }
                    print(json.dumps(mirrored), file=log_stream)
        for detail in left_out:
            warning = {"level": "WARNING", "message": "resource not mirrored locally", "detail": detail}
            print(json.dumps(warning), file=log_stream)
