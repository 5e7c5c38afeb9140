"""Runs alert files through the whole pipeline on a local AWS: the queue, the real enrich handler,
VirusTotal (live or replayed), DynamoDB, and the real state machine with the real task handlers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from unittest import mock

import requests.adapters

from vtriage.adapters.dynamodb import failure_key, from_item
from vtriage.config import DEFAULT_VT_BASE_URL, EnrichSettings
from vtriage.errors import ConfigurationError, InvalidAlertError
from vtriage.intake import parse_alerts
from vtriage.models import Alert, ResourceType, Severity
from vtriage_local.replay import ReplayServer, bundled_recordings
from vtriage_local.seed import instances_named, resources_named, seed_access_keys, seed_instances
from vtriage_local.stack import REGION, LocalAws

ALERT_QUEUE = "AlertQueue"
DEAD_LETTER_QUEUE = "AlertDeadLetterQueue"
ENRICH_FUNCTION = "EnrichFunction"
CASES_TABLE = "CasesTable"
_SOURCE_ID_ATTRIBUTE = "vtriage_source_message_id"
_EXECUTION_WAIT_S = 120.0
_DEFERRED_POLL_S = 0.5
# Long enough for a minute window to reopen; a record deferred past it (a spent daily quota) stays queued.
_DEFERRED_WAIT_S = 150.0
# Replayed VirusTotal answers cost nothing: the quota is a premium key's, not the template's free one.
REPLAY_QUOTA = {"VirusTotalQuotaPerMinute": "10000", "VirusTotalQuotaPerDay": "1000000"}


class UsageError(Exception):
    """The command line or an input file cannot be used at all (exit status 1)."""


@dataclass
class VirusTotalSource:
    """Where VirusTotal answers from: the live API when a key is given, otherwise the replay server."""

    api_key: str | None = None
    base_url: str = DEFAULT_VT_BASE_URL
    recordings: Path = field(default_factory=bundled_recordings)
    latency_ms: int = 0
    faults: dict[str, float] | None = None
    seed: int = 0

    @classmethod
    def from_environment(cls, recordings: Path | None = None, **kwargs: Any) -> VirusTotalSource:
        """Live when VT_API_KEY is set (against VT_BASE_URL), replayed otherwise."""
        return cls(
            api_key=os.environ.get("VT_API_KEY") or None,
            base_url=os.environ.get("VT_BASE_URL") or DEFAULT_VT_BASE_URL,
            recordings=recordings or bundled_recordings(),
            **kwargs,
        )


@dataclass
class Delivery:
    """One record as it entered the local queue."""

    source_id: str
    body: str


def alerts_in(deliveries: list[Delivery]) -> list[Alert]:
    """The alerts the deliveries hold, for the local account to mirror their instances; records the
    enrich function will reject are passed over here."""
    found: list[Alert] = []
    for delivery in deliveries:
        try:
            found.extend(parse_alerts(json.loads(delivery.body)))
        except (json.JSONDecodeError, InvalidAlertError):
            continue
    return found


NO_FINDING_TO_TRIAGE = (
    "acknowledged without a case: its findings are suppressed, resolved or archived, or are GuardDuty "
    "findings seen through Security Hub, which reach the queue through GuardDuty's own rule"
)


def holds_no_finding_to_triage(delivery: Delivery) -> bool:
    """A valid record whose findings the enrich function, with its deployed options, leaves alone."""
    try:
        return not EnrichSettings.from_environ().intake.parse(json.loads(delivery.body))
    except (json.JSONDecodeError, InvalidAlertError, ConfigurationError):
        return False


def read_deliveries(path: Path) -> list[Delivery]:
    """The records a file holds: each record of an SQS event, or the whole document as one message
    (as EventBridge delivers an event, and as `vtriage send` queues any other alert)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return [Delivery(source_id=f"{path.name}", body=text)]
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        records = document["Records"]
        if all(isinstance(record, dict) and "body" in record for record in records):
            return [
                Delivery(
                    source_id=str(record.get("messageId") or f"{path.name}#{index}"), body=str(record["body"])
                )
                for index, record in enumerate(records)
            ]
    return [Delivery(source_id=path.name, body=text)]


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

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.sqs = aws.client("sqs")
        self.dynamodb = aws.client("dynamodb")
        self.sfn = aws.client("stepfunctions")
        self.queue_url = aws.ref(ALERT_QUEUE)
        self.dlq_url = aws.ref(DEAD_LETTER_QUEUE)
        self.table = aws.ref(CASES_TABLE)
        redrive = json.loads(
            self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
            .get("Attributes", {})
            .get("RedrivePolicy", '{"maxReceiveCount": 1}')
        )
        self.max_receives = int(redrive["maxReceiveCount"])
        self.batch_size = _batch_size(aws)

    def enqueue(self, delivery: Delivery) -> None:
        """Queue a record as a detector or EventBridge would."""
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=delivery.body,
            MessageAttributes={
                _SOURCE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": delivery.source_id}
            },
        )

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Deliver queued records to the enrich handler in batches, as the event source mapping does,
        redelivering failed ones until the redrive policy parks them. Returns record outcomes and failures."""
        outcomes: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        deferred_deadline = time.monotonic() + _DEFERRED_WAIT_S
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                if self._deferred_waiting() and time.monotonic() < deferred_deadline:
                    # Records the enrich function deferred until the VirusTotal quota reopens come back.
                    time.sleep(_DEFERRED_POLL_S)
                    continue
                break
            event = {"Records": [_lambda_record(message, self.queue_url) for message in messages]}
            response = self.aws.invoke(ENRICH_FUNCTION, event)
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
            for message in messages:
                source_id = (
                    message.get("MessageAttributes", {}).get(_SOURCE_ID_ATTRIBUTE, {}).get("StringValue", "")
                )
                if message["MessageId"] in failed:
                    receives = int(message["Attributes"].get("ApproximateReceiveCount", "1"))
                    if receives >= self.max_receives:
                        # What SQS does past maxReceiveCount: the record moves to the dead-letter queue.
                        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=message["Body"])
                        self.sqs.delete_message(
                            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                        )
                        failures.append(
                            {
                                "message_id": source_id,
                                "reason": f"the enrich function failed on it {receives} times; moved to the "
                                "dead-letter queue (see the function log for the error)",
                            }
                        )
                    else:
                        self.sqs.change_message_visibility(
                            QueueUrl=self.queue_url,
                            ReceiptHandle=message["ReceiptHandle"],
                            VisibilityTimeout=0,
                        )
                    continue
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                failure = self.failure_record(message["MessageId"])
                if failure is not None:
                    failures.append({"message_id": source_id, "reason": str(failure["reason"])})
                else:
                    outcomes.append({"message_id": source_id, "queue_message_id": message["MessageId"]})
        return outcomes, failures

    def _deferred_waiting(self) -> bool:
        """True while records re-queued with a delay (deferred until the quota reopens) are on their way."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        ).get("Attributes", {})
        return int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")) > 0

    def failure_record(self, message_id: str) -> dict[str, Any] | None:
        """The failure record the enrich function left for a rejected message."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"case_id": {"S": failure_key(message_id)}}
        ).get("Item")
        return from_item(item) if item else None

    def case(self, case_id: str) -> dict[str, Any] | None:
        """A case as stored."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"case_id": {"S": case_id}}, ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def cases_started_since(self, known: set[str]) -> list[str]:
        """Case ids of executions this run started, oldest first."""
        machine = self.aws.ref("TriageStateMachine")
        executions = self.sfn.list_executions(stateMachineArn=machine).get("executions", [])
        names = [execution["name"] for execution in sorted(executions, key=lambda e: e["startDate"])]
        return [name for name in names if name not in known]

    def wait_for(self, execution_arn: str) -> str:
        """The execution's final status (RUNNING if it did not finish in time)."""
        deadline = time.monotonic() + _EXECUTION_WAIT_S
        while True:
            status = str(self.sfn.describe_execution(executionArn=execution_arn)["status"])
            if status != "RUNNING" or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


def _batch_size(aws: LocalAws) -> int:
    events = aws.template["Resources"][ENRICH_FUNCTION]["Properties"].get("Events", {})
    for event in events.values():
        if event.get("Type") == "SQS":
            return int(event.get("Properties", {}).get("BatchSize", 10))
    return 10


def _lambda_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to a function."""
    queue_name = queue_url.rsplit("/", 1)[-1]
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
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{queue_name}",
        "awsRegion": REGION,
    }


def case_summary(case: dict[str, Any], execution_status: str) -> dict[str, Any]:
    """A stored case as the runner's JSON contract shows it."""
    alert = case["alert"]
    ticket = case.get("ticket")
    return {
        "case_id": case["case_id"],
        "alert_id": alert["id"],
        "source": alert["source"],
        "type": alert["type"],
        "title": alert.get("title", ""),
        "severity": alert["severity"]["score"],
        "severity_label": _severity_label(float(alert["severity"]["score"])),
        "verdict": case["verdict"],
        "branch": case.get("branch"),
        "status": case.get("status"),
        "execution_arn": case.get("execution_arn"),
        "execution_status": execution_status,
        "iocs": [
            {
                "type": ioc["type"],
                "value": ioc["value"],
                "verdict": ioc["verdict"],
                "skipped_reason": ioc.get("skipped_reason"),
                "malicious": ioc.get("malicious", 0),
                "suspicious": ioc.get("suspicious", 0),
                "total": ioc.get("total", 0),
                "cached": ioc.get("cached", False),
                "reasons": ioc.get("reasons", []),
                "link": ioc.get("link"),
                "found_at": ioc.get("found_at"),
            }
            for ioc in case.get("iocs", [])
        ],
        "actions": [
            {
                "type": action["type"],
                "target": action["target"],
                "status": action["status"],
                "detail": action.get("detail", ""),
            }
            for action in case.get("actions", [])
        ],
        "ticket": {"provider": ticket["provider"], "id": ticket["id"], "url": ticket.get("url")}
        if ticket
        else None,
        "error": case.get("error"),
    }


def _severity_label(score: float) -> str:
    return Severity(score=score).label


def run_files(
    paths: list[Path],
    vt: VirusTotalSource,
    log_stream: IO[str],
    template_path: Path | None = None,
    parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run every file through one local pipeline; return the runner's JSON document."""
    deliveries = [delivery for path in paths for delivery in read_deliveries(path)]
    started = time.monotonic()
    replay = None
    if vt.api_key is None:
        replay = ReplayServer(
            vt.recordings,
            api_key="local-replay-key",
            latency_ms=vt.latency_ms,
            faults=vt.faults,
            seed=vt.seed,
        )
        replay.start()
    base_url = replay.base_url if replay else vt.base_url
    previous_base = os.environ.get("VT_BASE_URL")
    os.environ["VT_BASE_URL"] = base_url
    try:
        stack_kwargs: dict[str, Any] = {
            "vt_api_key": vt.api_key or "local-replay-key",
            "parameters": (REPLAY_QUOTA if replay is not None else {}) | (parameters or {}),
        }
        if template_path is not None:
            stack_kwargs["template_path"] = template_path
        # Handlers log JSON lines to stdout, as in Lambda; here they go to the log stream so that
        # stdout carries only the runner's own output.
        with (
            redirect_stdout(log_stream),
            LocalAws(**stack_kwargs) as aws,
            counting_requests_to(base_url) as sent,
        ):
            pipeline = Pipeline(aws)
            alerts = alerts_in(deliveries)
            seed_instances(aws.client("ec2"), instances_named(alerts))
            seed_access_keys(aws.client("iam"), resources_named(alerts, ResourceType.ACCESS_KEY))
            for delivery in deliveries:
                pipeline.enqueue(delivery)
            _outcomes, failures = pipeline.drain()
            failed_ids = {failure["message_id"] for failure in failures}
            ignored = [
                {"message_id": delivery.source_id, "reason": NO_FINDING_TO_TRIAGE}
                for delivery in deliveries
                if delivery.source_id not in failed_ids and holds_no_finding_to_triage(delivery)
            ]
            cases = []
            for case_id in pipeline.cases_started_since(set()):
                stored = pipeline.case(case_id)
                if stored is None or not stored.get("execution_arn"):
                    continue
                status = pipeline.wait_for(stored["execution_arn"])
                cases.append(case_summary(pipeline.case(case_id) or stored, status))
    finally:
        if replay is not None:
            replay.stop()
        if previous_base is None:
            os.environ.pop("VT_BASE_URL", None)
        else:
            os.environ["VT_BASE_URL"] = previous_base
    return {
        "cases": cases,
        "failures": failures,
        "ignored": ignored,
        "stats": {
            "records": len(deliveries),
            "vt_requests": sent[0],
            "vt_cache_hits": sum(1 for case in cases for ioc in case["iocs"] if ioc["cached"]),
            "duration_s": round(time.monotonic() - started, 3),
        },
    }
