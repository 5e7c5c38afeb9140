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


# Real GuardDuty findings (events/PROVENANCE.md), each written on one line as an export of findings would.
FINDINGS = [
    EVENTS / "guardduty-ec2-canary-outbound-ssh.json",
    EVENTS / "guardduty-iam-recon-malicious-ip-caller.json",
    EVENTS / "guardduty-s3-pentest-parrot-linux.json",
]
GET_FINDINGS = EVENTS / "guardduty-getfindings-trojan-droppoint-dns.json"


def one_line(path: Path) -> str:
    """The JSON document of a file, written on one line."""
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), separators=(",", ":"))


def cut_inside_a_string(line: str, key: str) -> tuple[str, int]:
    """The line cut off a few characters into the string value of `key`, and that string's column."""
    quote = line.index(f'"{key}":"') + len(f'"{key}":')
    return line[: quote + 12], quote + 1


def test_a_json_lines_file_whose_last_line_is_cut_off_queues_the_others_and_refuses_that_line_alone(
    tmp_path: Path,
) -> None:
    # Given three GuardDuty findings, one a line, and a fourth cut off inside its description
    lines = [one_line(path) for path in FINDINGS]
    cut, column = cut_inside_a_string(one_line(GET_FINDINGS), "Description")
    path = tmp_path / "trunc.jsonl"
    path.write_text("\n".join([*lines, cut]) + "\n", encoding="utf-8")

    # When it is read
    deliveries = read_alert_files([str(path)], io.BytesIO())

    # Then each finding is a record of its own, refused by nothing, and the fourth line is refused alone,
    # the reason saying what is wrong at which line and column of the file
    assert [(delivery.source_id, delivery.refused) for delivery in deliveries] == [
        ("trunc.jsonl line 1", None),
        ("trunc.jsonl line 2", None),
        ("trunc.jsonl line 3", None),
        ("trunc.jsonl line 4", f"not JSON (Unterminated string starting at line 4, column {column})"),
    ]
    assert [delivery.body for delivery in deliveries[:3]] == lines


def test_a_bad_line_in_the_middle_is_refused_alone_and_the_lines_after_it_keep_their_numbers(
    tmp_path: Path,
) -> None:
    # Given findings one a line, the second missing a comma (two lines glued by an editor), and a blank line
    first, second, third = (one_line(path) for path in FINDINGS)
    glued = second.index(',"region"')
    path = tmp_path / "findings.ndjson"
    path.write_text(f"{first}\n{second[:glued]}{second[glued + 1 :]}\n\n{third}\n", encoding="utf-8")

    # When it is read
    deliveries = read_alert_files([str(path)], io.BytesIO())

    # Then the second line is refused alone where the comma is missing, the blank line is no record, and the
    # last finding is named by its own line
    assert [(delivery.source_id, delivery.refused) for delivery in deliveries] == [
        ("findings.ndjson line 1", None),
        ("findings.ndjson line 2", f"not JSON (Expecting ',' delimiter at line 2, column {glued + 1})"),
        ("findings.ndjson line 4", None),
    ]
    assert deliveries[2].body == third


def test_a_line_that_is_not_utf8_is_refused_alone_saying_where(tmp_path: Path) -> None:
    # Given findings one a line, the second's title written in Latin-1 ("cafe" with an e acute)
    first, second, third = (one_line(path).encode() for path in FINDINGS)
    latin1 = second.replace(b'"title":"', b'"title":"caf\xe9 ', 1)
    path = tmp_path / "findings.jsonl"
    path.write_bytes(first + b"\n" + latin1 + b"\n" + third + b"\n")

    # When it is read
    deliveries = read_alert_files([str(path)], io.BytesIO())

    # Then that line alone is refused, naming the byte and its offset in the line; the others are records
    offset = latin1.index(b"\xe9")
    assert [(delivery.source_id, delivery.refused) for delivery in deliveries] == [
        ("findings.jsonl line 1", None),
        (
            "findings.jsonl line 2",
            f"not UTF-8 text (byte 0xe9 at offset {offset} of line 2): SQS carries text only",
        ),
        ("findings.jsonl line 3", None),
    ]


def test_json_lines_on_the_standard_input_are_read_line_by_line(tmp_path: Path) -> None:
    # Given the findings one a line and a fourth cut off, on the standard input
    lines = [one_line(path) for path in FINDINGS]
    cut, column = cut_inside_a_string(one_line(GET_FINDINGS), "Description")
    stdin = io.BytesIO(("\n".join([*lines, cut]) + "\n").encode())

    # When `-` is read, Then the lines are named after stdin, the fourth refused alone
    deliveries = read_alert_files(["-"], stdin)
    assert [(delivery.source_id, delivery.refused) for delivery in deliveries] == [
        ("stdin line 1", None),
        ("stdin line 2", None),
        ("stdin line 3", None),
        ("stdin line 4", f"not JSON (Unterminated string starting at line 4, column {column})"),
    ]


def test_a_pretty_printed_finding_cut_off_is_one_record_refused_where_it_breaks(tmp_path: Path) -> None:
    # Given a GuardDuty finding as its source wrote it (pretty-printed), cut off inside its title
    text = FINDINGS[0].read_text(encoding="utf-8")
    title = text.index('"title": "') + len('"title": ')
    path = tmp_path / "finding.json"
    path.write_text(text[: title + 12], encoding="utf-8")
    line = text.count("\n", 0, title) + 1
    column = title - text.rindex("\n", 0, title)

    # When it is read, Then it is one record, refused with the line and column of the file where it breaks
    [delivery] = read_alert_files([str(path)], io.BytesIO())
    assert (delivery.source_id, delivery.refused) == (
        "finding.json",
        f"not JSON (Unterminated string starting at line {line}, column {column})",
    )


def test_an_array_of_one_line_findings_without_its_closing_bracket_is_one_record_refused(
    tmp_path: Path,
) -> None:
    # Given OCSF's example findings (an array written one indented finding a line), its closing bracket lost
    source = CORPUS / "ocsf-examples__ssc_malware_infection_detected_sample.json"
    lines = source.read_text(encoding="utf-8").rstrip().splitlines()
    assert lines[-1] == "]"
    path = tmp_path / "findings.json"
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")

    # When it is read, Then it is one record, refused at the end of the file, where the bracket is missing
    [delivery] = read_alert_files([str(path)], io.BytesIO())
    assert delivery.source_id == "findings.json"
    assert delivery.refused == f"not JSON (Expecting ',' delimiter at line {len(lines)}, column 1)"


def test_a_file_whose_every_line_is_cut_off_is_one_record_refused_at_the_first_break(tmp_path: Path) -> None:
    # Given three findings one a line, every line cut off inside its title
    lines = [cut_inside_a_string(one_line(path), "title")[0] for path in FINDINGS]
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # When it is read
    [delivery] = read_alert_files([str(path)], io.BytesIO())

    # Then nothing shows it is JSON Lines: it is one record, refused where the file first stops being JSON
    # (the first line's title runs into the line end)
    assert delivery.source_id == "cut.jsonl"
    assert delivery.refused == f"not JSON (Invalid control character at line 1, column {len(lines[0]) + 1})"
