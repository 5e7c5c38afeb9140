"""Mutated real findings and hostile bodies thrown at the intake and at the parser (hypothesis).

The documents of tests/corpus are mutated the ways real senders and attackers break them (a value of
another JSON type, huge strings, deep nesting, unicode oddities and escaped lone surrogates, deleted
keys, out-of-range times, numbers too large to convert) and hostile bodies are made from scratch
(random text and bytes, not JSON, empty). Properties:

- the parser (`decode_body`, then `IntakeOptions().read`) raises nothing but InvalidAlertError, and when
  it reads a document, every finding of it (counted here, independently of the parser) ends exactly once
  as an alert, a refusal or an ignored finding, each refusal and ignored finding with a reason;
- the intake's logic (`accept_alert`) answers 202 (queues the body once) or AlertRejectedError with 400
  or 413 (queues nothing), never anything else.

Runs are bounded and derandomized so that CI is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtriage.errors import InvalidAlertError
from vtriage.fakes import FakeAlertQueue
from vtriage.intake import FindingRefusal, IgnoredFinding, IntakeOptions, IntakeResult
from vtriage.intake.body import decode_body
from vtriage.intake_api import AcceptedAlert, AlertRejectedError, accept_alert

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
DOCUMENTS: dict[str, Any] = {
    path.name: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(CORPUS.glob("*.json"))
    if path.name != "expected.json"
}
OPTIONS = IntakeOptions()
BOUNDED = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A stand-in for a value that is spliced into the JSON text after encoding (json.dumps itself refuses to
# encode nesting deeper than Python's recursion limit).
_SPLICE = "\u0000splice\u0000"

Path_ = tuple[str | int, ...]


def value_paths(document: Any, limit: int = 5000) -> list[Path_]:
    """Every place in the document that holds a value, the document itself first."""
    found: list[Path_] = [()]
    stack: list[tuple[Path_, Any]] = [((), document)]
    while stack and len(found) < limit:
        path, value = stack.pop()
        children: list[tuple[str | int, Any]] = []
        if isinstance(value, dict):
            children = list(value.items())
        elif isinstance(value, list):
            children = list(enumerate(value))
        for key, child in children:
            found.append((*path, key))
            stack.append(((*path, key), child))
    return found


def replaced(document: Any, path: Path_, value: Any) -> Any:
    """A copy of the document with the value at `path` replaced."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return copy


def deleted(document: Any, path: Path_) -> Any:
    """A copy of the document without the value at `path` (an object's key or a list's item)."""
    if not path:
        return document
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return copy


def findings_in(document: Any) -> int | None:
    """How many findings a document holds, read here without the parser: the items of an OCSF array,
    of get-findings output's `Findings`, of a Security Hub event's `detail.findings` (or of that detail
    alone, `findings`), of a Falcon Alerts API response's `resources` (beside its `meta`, or with nothing
    but CrowdStrike's response keys) and of Alert Center `alerts.list` output's `alerts`, or those of the
    document an SNS notification's `Message` holds; else one. An empty page of those is acknowledged as
    holding no finding: one entry. None when the document is no JSON object or array."""
    if isinstance(document, list):
        return len(document)
    if not isinstance(document, dict):
        return None
    if "TopicArn" in document and isinstance(document.get("Message"), str):
        try:
            return findings_in(json.loads(document["Message"]))
        except (ValueError, RecursionError):
            return None
    for key in ("Findings", "findings"):
        if isinstance(document.get(key), list):
            return len(document[key]) or 1
    falcon_response = "meta" in document or set(document) <= {"meta", "resources", "errors"}
    if falcon_response and isinstance(document.get("resources"), list):
        return len(document["resources"]) or 1
    if isinstance(document.get("alerts"), list) and "alertId" not in document:
        return len(document["alerts"]) or 1
    detail = document.get("detail")
    if isinstance(detail, dict) and isinstance(detail.get("findings"), list):
        return len(detail["findings"])
    return 1


def nested(depth: int) -> str:
    """A JSON value nested `depth` levels deep."""
    return "[" * depth + '"x"' + "]" * depth


HUGE_STRINGS = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["A", ".", "[.]", "a.", "é", "xn--", "0", "-", "\u202e", "hxxp://", "%"]),
    st.integers(min_value=1_000, max_value=10_000),
)
ODD_TEXT = st.sampled_from(
    [
        "\ud800",  # a lone surrogate: json.dumps escapes it as \ud800, which decodes back to a lone surrogate
        "\udfff.example.com",
        "\x00",
        "\x1b[31m",
        "\ufeff",
        "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",  # fullwidth example.com
        "пример.рф",
        "a\u0301.com",
        "\U0001f600.com",
        "xn--zz.com",
        "1.2.3.4\u200b",
        "GeneratedFindingDomainName",
        "i-99999999",
        "sha256",
        "http://" + "a" * 3000 + ".com/",
    ]
)
ODD_TIMES = st.sampled_from(
    [
        "99999-12-31T23:59:59Z",
        "0000-00-00T00:00:00Z",
        "2020-02-30T00:00:00Z",
        "9999-12-31T23:59:59.999999999+99:99",
        "0001-01-01T00:00:00-23:59",
        "2025-02-25 20:40:06.721",
        "-1",
        "",
        99999999999999999999,
        -1,
        253402300800000,
        1e300,
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**60, -(10**60), 2**63, float("nan"), float("inf"), -0.0, 1e-320]),
    st.floats(allow_nan=True, allow_infinity=True),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=30),
    ODD_TEXT,
    ODD_TIMES,
    HUGE_STRINGS,
    st.just([]),
    st.just({}),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def mutated_corpus_bodies(draw: st.DrawFn) -> str:
    """A real document, mutated one to three times, as JSON text."""
    document = DOCUMENTS[draw(st.sampled_from(sorted(DOCUMENTS)))]
    splice: str | None = None
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = value_paths(document)
        path = paths[draw(st.integers(min_value=0, max_value=len(paths) - 1))]
        kind = draw(st.sampled_from(["replace", "replace", "delete", "nest", "huge number"]))
        if kind == "replace":
            document = replaced(document, path, draw(VALUES))
        elif kind == "delete":
            document = deleted(document, path)
        elif kind == "nest" and splice is None:
            splice = nested(draw(st.integers(min_value=30, max_value=1_500)))
            document = replaced(document, path, _SPLICE)
        else:
            splice = splice or "9" * draw(st.integers(min_value=4_000, max_value=6_000))
            document = replaced(document, path, _SPLICE)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    if splice is not None:
        for placeholder in {json.dumps(_SPLICE), json.dumps(_SPLICE, ensure_ascii=False)}:
            text = text.replace(placeholder, splice)
    return text


HOSTILE_BODIES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", errors="surrogateescape")),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.sampled_from(
        [
            "",
            " \n\t",
            "null",
            "true",
            "0",
            "[]",
            "{}",
            '""',
            "NaN",
            "[1e999]",
            '{"a":1,"a":2}',
            "\ufeff{}",
            '{"a": "\\ud800"}',
            '{"Findings": [1, "x", null, [], {}]}',
            '{"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported",'
            ' "detail": {"findings": []}}',
            '{"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": null}',
            '{"class_uid": 2004}',
            "[" * 100_000,
            '{"a":' * 2_000 + "1" + "}" * 2_000,
            "1" * 5_000,
            '{"Findings": [' + "9" * 5_000 + "]}",
            "\x00",
            "{" + '"k": 1,' * 20_000 + '"k": 2}',
        ]
    ),
)


def read(body: str) -> IntakeResult | None:
    """What the enrich function makes of a body; None when it refuses it whole (InvalidAlertError)."""
    refusal = ""
    try:
        return OPTIONS.read(decode_body(body))
    except InvalidAlertError as error:
        refusal = error.reason
    assert refusal.strip(), "a whole-body refusal without a reason"
    return None


def assert_every_finding_once(body: str, result: IntakeResult) -> None:
    """Each finding of the document is an alert, a refusal or an ignored finding, exactly once."""
    document = json.loads(body)
    expected = findings_in(document)
    if expected is not None:
        accounted = len(result.alerts) + len(result.refused) + len(result.ignored)
        assert accounted == expected, f"{expected} findings in the document, {accounted} accounted for"
    entries: list[FindingRefusal | IgnoredFinding] = [*result.refused, *result.ignored]
    for entry in entries:
        assert entry.reason.strip(), f"{entry.where!r} has no reason"
    places = [entry.where for entry in entries]
    assert len(places) == len(set(places)), f"a finding stands twice: {places}"


def assert_intake_answers_202_or_4xx(body: str) -> None:
    """accept_alert queues the body once, or refuses it with 400/413 and queues nothing."""
    queue = FakeAlertQueue()
    answer: AcceptedAlert | AlertRejectedError
    try:
        answer = accept_alert(body, queue, options=OPTIONS, stamp={})
    except AlertRejectedError as rejected:
        answer = rejected
    if isinstance(answer, AlertRejectedError):
        assert answer.status in (400, 413), answer.status
        assert answer.reason.strip()
        assert queue.bodies == []
    else:
        assert queue.bodies == [body]


@BOUNDED
@given(mutated_corpus_bodies())
def test_a_mutated_real_finding_never_escapes_the_parser(body: str) -> None:
    # Given a real finding broken the way senders and attackers break them
    # When the enrich function reads it
    result = read(body)

    # Then it is refused whole with a reason, or each of its findings has exactly one fate
    if result is not None:
        assert_every_finding_once(body, result)


@BOUNDED
@given(mutated_corpus_bodies())
def test_a_mutated_real_finding_gets_202_or_a_400_from_the_intake(body: str) -> None:
    # Given a real finding broken the way senders and attackers break them
    # When it is pushed to the intake
    # Then the sender hears 202 or 400/413, never an unforeseen error
    assert_intake_answers_202_or_4xx(body)


@settings(BOUNDED, max_examples=300)
@given(HOSTILE_BODIES)
def test_a_hostile_body_never_escapes_the_parser(body: str) -> None:
    # Given a body that is random, not JSON, empty or built to hurt
    # When the enrich function reads it
    result = read(body)

    # Then it is refused whole with a reason, or each finding it holds has exactly one fate
    if result is not None:
        assert_every_finding_once(body, result)


@settings(BOUNDED, max_examples=300)
@given(HOSTILE_BODIES)
def test_a_hostile_body_gets_202_or_a_400_from_the_intake(body: str) -> None:
    # Given a body that is random, not JSON, empty or built to hurt
    # When it is pushed to the intake
    # Then the sender hears 202 or 400/413, never an unforeseen error
    assert_intake_answers_202_or_4xx(body)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"detail": "' + "A" * 300_000 + '"}', 413),
        ("", 400),
        ("1" * 5_000, 400),
        ('{"a": "\\ud800"}', 400),
    ],
    ids=["over-the-queue-limit", "empty", "integer-of-5000-digits", "escaped-lone-surrogate"],
)
def test_the_intake_names_the_status_of_a_known_hostile_body(body: str, status: int) -> None:
    # Given a hostile body whose fate is known
    queue = FakeAlertQueue()

    # When it is pushed to the intake
    with pytest.raises(AlertRejectedError) as rejected:
        accept_alert(body, queue, options=OPTIONS, stamp={})

    # Then the sender hears that status, and nothing is queued
    assert rejected.value.status == status
    assert queue.bodies == []


def _xml_character(code: int) -> bool:
    """XML 1.0's Char production, the range SQS and SNS document that they carry."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def test_a_body_may_hold_every_character_sqs_carries_and_no_other() -> None:
    # Given every Unicode code point, split by XML's Char production (what SQS and SNS carry)
    carried = "".join(chr(code) for code in range(0x110000) if _xml_character(code))
    refused = [chr(code) for code in range(0x110000) if not _xml_character(code)]

    # When a body holds all the carried characters raw, and each refused one raw
    document = decode_body(json.dumps({"title": carried}, ensure_ascii=False))
    reasons = []
    for character in refused:
        with pytest.raises(InvalidAlertError) as error:
            decode_body(f'["{character}"]')
        reasons.append((character, str(error.value)))

    # Then the carried ones come through unchanged, and every refused one is refused naming its code point
    assert document == {"title": carried}
    assert len(reasons) == len(refused) == 29 + 2048 + 2
    misnamed = [repr(character) for character, reason in reasons if f"U+{ord(character):04X}" not in reason]
    assert misnamed == []


def test_an_escape_costs_only_its_own_value_never_the_body() -> None:
    # Given each character SQS does not carry raw, written as a JSON escape in one finding's value
    refused = [chr(code) for code in range(0x110000) if not _xml_character(code)]
    controls = [character for character in refused if ord(character) < 0x20]
    unencodable = [character for character in refused if ord(character) >= 0x20]

    # When each body is decoded
    decoded = [(character, decode_body(json.dumps([f"a{character}b", "next"]))) for character in refused]

    # Then none is refused: a control character is kept as the sender wrote it (whatever shows it escapes
    # it), and a lone surrogate, U+FFFE or U+FFFF (which UTF-8 or SQS cannot take) becomes U+FFFD
    assert len(controls) == 29
    assert len(unencodable) == 2048 + 2
    assert [document for character, document in decoded if character in controls] == [
        [f"a{character}b", "next"] for character in controls
    ]
    assert {json.dumps(document) for character, document in decoded if character in unencodable} == {
        json.dumps(["a\ufffdb", "next"])
    }


def test_a_key_with_an_unencodable_character_is_kept_with_its_value() -> None:
    # Given a finding whose object key decodes to a lone surrogate, deep in the document
    body = '{"detail": {"service": {"additionalInfo": {"\\udc80key": "value", "other": 1}}}}'

    # When it is decoded
    document = decode_body(body)

    # Then the key is kept, its surrogate replaced, beside the other keys in their order
    assert document == {"detail": {"service": {"additionalInfo": {"\ufffdkey": "value", "other": 1}}}}


def test_the_independent_finding_count_reads_each_shape_of_the_corpus() -> None:
    # Given the corpus, whose documents hold 1 to 5 findings in every supported shape
    # When the test's own count reads them
    counts = {name: findings_in(document) for name, document in DOCUMENTS.items()}

    # Then it agrees with what a person counted in tests/corpus/expected.json
    expected = json.loads((CORPUS / "expected.json").read_text())["documents"]
    disagreements = {
        name: (count, expected[name]["findings"])
        for name, count in counts.items()
        if not expected[name].get("refused_document") and count != expected[name]["findings"]
    }
    assert disagreements == {}
