"""Alert files as `vtriage run` and `vtriage send` read them, before anything starts: what each file holds,
the standard input, and the files that cannot be used, each saying why."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vtriage_local.alert_files import UsageError, read_alert_files

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE = EVENTS / "synthetic-guardduty-backdoor-c2-dns.json"


def test_the_standard_input_is_read_as_a_file_named_stdin(tmp_path: Path) -> None:
    # Given a sample on the standard input, between two files
    other = tmp_path / "other.json"
    other.write_bytes(SAMPLE.read_bytes())

    # When `-` is named among the files
    deliveries = read_alert_files([str(SAMPLE), "-", str(other)], io.BytesIO(SAMPLE.read_bytes()))

    # Then it is one record in its place, named stdin, with the sample's content, refused by nothing
    assert [delivery.source_id for delivery in deliveries] == [SAMPLE.name, "stdin", "other.json"]
    assert deliveries[1].body == SAMPLE.read_text(encoding="utf-8")
    assert all(delivery.refused is None for delivery in deliveries)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"{ this is not JSON",
            "not JSON (Expecting property name enclosed in double quotes at line 1, column 3)",
        ),
        (b"", "the file is empty, and SQS takes no empty message"),
        (b'{"detail": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 15): SQS carries text only"),
        (b'{"a": ' * 70 + b"1" + b"}" * 70, "nested deeper than 64 levels"),
    ],
)
def test_a_file_the_pipeline_would_refuse_whole_is_refused_as_it_is_read(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    # Given a file no pipeline can triage
    path = tmp_path / "alert.json"
    path.write_bytes(content)

    # When it is read
    [delivery] = read_alert_files([str(path)], io.BytesIO())

    # Then it is one record, refused with the reason the enrich function and the intake give
    assert (delivery.source_id, delivery.refused) == ("alert.json", reason)


def test_the_records_of_an_sqs_event_are_left_for_the_enrich_function_to_judge(tmp_path: Path) -> None:
    # Given an SQS event whose second record's body is not JSON
    path = tmp_path / "batch.json"
    path.write_text('{"Records": [{"messageId": "m-1", "body": "{}"}, {"messageId": "m-2", "body": "{x"}]}')

    # When it is read, Then both records are handed on, as SQS would deliver them to the function
    deliveries = read_alert_files([str(path)], io.BytesIO())
    assert [(delivery.source_id, delivery.body, delivery.refused) for delivery in deliveries] == [
        ("m-1", "{}", None),
        ("m-2", "{x", None),
    ]


def test_a_directory_a_missing_file_and_stdin_twice_are_usage_errors_that_say_which(tmp_path: Path) -> None:
    # Given a directory, a file that does not exist, and the standard input named twice
    missing = tmp_path / "missing.json"

    # Then each is a usage error saying what is wrong with it
    with pytest.raises(UsageError, match=rf"^{tmp_path} is a directory: name its files, e\.g\. .*\*\.json$"):
        read_alert_files([str(tmp_path)], io.BytesIO())
    with pytest.raises(UsageError, match=rf"^no such file: {missing}$"):
        read_alert_files([str(missing)], io.BytesIO())
    with pytest.raises(UsageError, match="can be read only once"):
        read_alert_files(["-", "-"], io.BytesIO(b"{}"))


CORPUS = Path(__file__).resolve().parents[1] / "corpus"
STREAM_EVENTS = [
    CORPUS / "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_1.json",
    CORPUS / "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_2.json",
    CORPUS / "elastic-integrations__crowdstrike_falcon_test-falcon-epp-detection-summary_3.json",
]


def test_a_json_lines_file_is_one_record_per_line_each_named_by_its_line(tmp_path: Path) -> None:
    # Given an Event Streams chunk as Falcon's stream writes it: one event per line (Elastic's real events),
    # with a blank line and Windows line ends
    events = [path.read_text(encoding="utf-8").strip() for path in STREAM_EVENTS]
    path = tmp_path / "stream.ndjson"
    path.write_bytes((events[0] + "\r\n" + events[1] + "\r\n\r\n" + events[2] + "\r\n").encode())

    # When it is read
    deliveries = read_alert_files([str(path)], io.BytesIO())

    # Then each event is one record, named after the file and its line, refused by nothing
    assert [(delivery.source_id, delivery.refused) for delivery in deliveries] == [
        ("stream.ndjson line 1", None),
        ("stream.ndjson line 2", None),
        ("stream.ndjson line 4", None),
    ]
    assert [json.loads(delivery.body) for delivery in deliveries] == [json.loads(event) for event in events]


@pytest.mark.parametrize(
    "content",
    [
        b'{"a": 1}\n{"b": 2} trailing words\n',  # a line that is not JSON
        b'{"a": 1}\n[{"b": 2}]\n',  # a line that is no object
        b'{"a": 1,\n"b": 2}\n{"c": 3}\n',  # one document spread over lines, then another
    ],
)
def test_a_file_that_is_neither_one_document_nor_json_lines_is_refused_whole(
    tmp_path: Path, content: bytes
) -> None:
    # Given a file whose lines are not each a JSON object
    path = tmp_path / "alerts.json"
    path.write_bytes(content)

    # When it is read, Then it is one record, refused as not JSON
    [delivery] = read_alert_files([str(path)], io.BytesIO())
    assert delivery.source_id == "alerts.json"
    assert (delivery.refused or "").startswith("not JSON (")


def test_a_line_the_pipeline_would_refuse_is_refused_alone(tmp_path: Path) -> None:
    # Given JSON Lines whose second line is nested too deeply
    path = tmp_path / "stream.ndjson"
    path.write_bytes(
        STREAM_EVENTS[0].read_bytes().strip() + b"\n" + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"\n"
    )

    # When it is read, Then the first line is a record and the second is refused alone, saying why
    first, second = read_alert_files([str(path)], io.BytesIO())
    assert (first.source_id, first.refused) == ("stream.ndjson line 1", None)
    assert (second.source_id, second.refused) == ("stream.ndjson line 2", "nested deeper than 64 levels")
