"""Reading one decoded finding, shared by every parser: typed reads that name the field at fault, the
identity fields an alert needs (with safe stand-ins when they are malformed), and the one step that
turns (type, raw value, path) candidates into canonical IOCs.

Three kinds of field, three ways to fail:

- what identifies the finding (its id, its shape): a read raises InvalidAlertError, and the finding
  alone is refused (`Fields.object`, `Fields.text` with `required=True`);
- what the alert is about (account, Region, times, severity, type): a malformed value keeps the alert,
  with a stand-in, a note on the case and a reason in `Alert.not_actionable`, so that no action runs on
  it automatically (`Fields.account_id`, `Fields.moment`, `Fields.malformed`, ...);
- where an IOC belongs: a value that cannot be one is kept on the alert as a skipped IOC, escaped, with
  the reason (`ioc_of`); a container of the wrong kind is noted and passed over (`Fields.branch`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from vtriage.display import SEVERITY_GUESSED, SHOWN_VALUE_LENGTH, escaped, json_kind, shown
from vtriage.errors import InvalidAlertError
from vtriage.intake.canonical import OWN_ADDRESS_REASON, canonical_ioc
from vtriage.intake.refang import MAX_FREE_TEXT, candidates_in_text, read_extent
from vtriage.models import Ioc, IocType, Severity, Subject

ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")

# What stands in for an account or Region that could not be read.
UNKNOWN = "unknown"
# What stands in for a time that could not be read, with nothing else to go on: clearly not a real one.
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# A severity that cannot be read is scored critical: whatever TICKET_MIN_SEVERITY says, a person sees it.
UNREADABLE_SEVERITY = Severity(score=9.0)
# Every note on a severity intake had to guess says so (`vtriage.display.SEVERITY_GUESSED`), so that the
# ticket and the runner's report can say it was guessed.
GUESSED_SEVERITY = SEVERITY_GUESSED
UNREADABLE_SEVERITY_NOTE = f"{GUESSED_SEVERITY}: scored {UNREADABLE_SEVERITY.label} so that a person sees it"

# GuardDuty's sample findings fill fields with placeholders such as `GeneratedFindingDomainName`.
PLACEHOLDER_PREFIX = "GeneratedFinding"
PLACEHOLDER_REASON = "a placeholder of a GuardDuty sample finding (GeneratedFinding...)"

# Why a GuardDuty finding Security Hub imported (as ASFF or OCSF) makes no case: naming what a deployer
# or a `vtriage run` user sets, the template parameter, before the functions' variable it becomes.
GUARDDUTY_COPY_REASON = (
    "a GuardDuty finding seen through Security Hub: GuardDuty reaches the queue directly (to read"
    " GuardDuty's findings through Security Hub instead, set the template parameter"
    " GuardDutyFindingsVia=securityhub; SKIP_GUARDDUTY_IN_SECURITYHUB)"
)

# The most notes kept per finding; the rest are counted.
MAX_NOTES = 20
# The most subjects (what an alert is about that no action acts on) kept per finding; the rest are counted.
MAX_SUBJECTS = 10
# The longest subject id kept (an ARN is at most 2,048 characters) and the longest name.
MAX_SUBJECT_ID = 2048
MAX_SUBJECT_NAME = 256
MAX_SUBJECT_TYPE = 128
# The longest text read as a time, or as a JSON object inside a string.
_MAX_TIME_TEXT = 64
_MAX_EMBEDDED_JSON = 65_536
# Seconds since 1970 of 10000-01-01: a later time is no time.
_END_OF_TIME = 253_402_300_800
# A number of seconds since 1970 above this is taken for milliseconds (it would be after the year 5138).
_MILLISECONDS_ABOVE = 100_000_000_000


class Candidate(NamedTuple):
    """A value found where an IOC belongs: its type, the sender's raw value (any JSON value), where it
    was found in the finding, and the hash algorithm the field declares, if any."""

    ioc_type: IocType
    raw: Any
    path: str
    algorithm: str | None = None


@dataclass(frozen=True)
class Envelope:
    """What an EventBridge event says around its findings: the stand-in for what a finding lacks."""

    account: Any = None
    region: Any = None
    time: Any = None
    custom_action: str | None = None  # the Security Hub custom action that sent the findings

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Envelope:
        """The envelope of an EventBridge event."""
        detail = event.get("detail")
        action = detail.get("actionName") if isinstance(detail, dict) else None
        return cls(
            account=event.get("account"),
            region=event.get("region"),
            time=event.get("time"),
            custom_action=action if isinstance(action, str) and action else None,
        )


class Fields:
    """Reads one finding; every field is named as `prefix` + its dotted path. Collects the notes and
    the reasons against automatic action that the alert will carry."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.notes: list[str] = []
        self.not_actionable: list[str] = []
        self.subjects: list[Subject] = []

    def where(self, path: str) -> str:
        """The full name of a field, as the sender's document spells it."""
        return self.prefix + path

    # --- reads that refuse the finding --------------------------------------------------------------

    def object(
        self, parent: Mapping[str, Any], key: str, at: str, *, required: bool = False
    ) -> dict[str, Any] | None:
        """`parent[key]` as an object; None when absent and not required."""
        value = parent.get(key)
        if value is None:
            if required:
                raise InvalidAlertError("missing", field=self.where(join(at, key)))
            return None
        if not isinstance(value, dict):
            raise InvalidAlertError(
                f"expected an object, got {json_kind(value)}", field=self.where(join(at, key))
            )
        return value

    def objects(self, parent: Mapping[str, Any], key: str, at: str) -> list[tuple[str, dict[str, Any]]]:
        """(path, item) for each object of the list `parent[key]`; none when absent."""
        path = join(at, key)
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidAlertError(f"expected a list, got {json_kind(value)}", field=self.where(path))
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidAlertError(
                    f"expected an object, got {json_kind(item)}", field=self.where(f"{path}[{index}]")
                )
            items.append((f"{path}[{index}]", item))
        return items

    def text(self, parent: Mapping[str, Any], key: str, at: str, *, required: bool = False) -> str | None:
        """`parent[key]` as a string; an empty string counts as absent."""
        value = parent.get(key)
        if value is None or value == "":
            if required:
                raise InvalidAlertError("missing", field=self.where(join(at, key)))
            return None
        if not isinstance(value, str):
            raise InvalidAlertError(
                f"expected a string, got {json_kind(value)}", field=self.where(join(at, key))
            )
        return value

    def required_object(self, parent: Mapping[str, Any], key: str, at: str) -> dict[str, Any]:
        """`parent[key]` as an object (possibly empty), or InvalidAlertError naming it."""
        value = self.object(parent, key, at, required=True)
        if value is None:  # `required` raised already; this keeps the type checker informed
            raise InvalidAlertError("missing", field=self.where(join(at, key)))
        return value

    def required_text(self, parent: Mapping[str, Any], key: str, at: str) -> str:
        """`parent[key]` as a non-empty string, or InvalidAlertError naming it."""
        value = self.text(parent, key, at, required=True)
        if value is None:
            raise InvalidAlertError("missing", field=self.where(join(at, key)))
        return value

    def texts(self, parent: Mapping[str, Any], key: str, at: str) -> list[tuple[str, str]]:
        """(path, string) for each string of the list `parent[key]`; none when absent."""
        path = join(at, key)
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidAlertError(
                f"expected a list of strings, got {json_kind(value)}", field=self.where(path)
            )
        return [(f"{path}[{index}]", item) for index, item in enumerate(value) if item]

    # --- reads that never refuse: what is not as expected is noted -----------------------------------

    def loose_text(self, parent: Mapping[str, Any], key: str) -> str | None:
        """`parent[key]` when it is a non-empty string; None otherwise (for titles, labels, names)."""
        value = parent.get(key)
        return value if isinstance(value, str) and value else None

    def loose_object(self, parent: Mapping[str, Any], key: str) -> dict[str, Any]:
        """`parent[key]` when it is an object; an empty one otherwise."""
        value = parent.get(key)
        return value if isinstance(value, dict) else {}

    def note(self, text: str) -> None:
        """Tell the analyst something intake did that matters (kept on the alert)."""
        self.notes.append(text)

    def note_unread(self, error: InvalidAlertError) -> None:
        """A part of the finding where IOCs belong that is not what the detector documents."""
        self.note(f"{error}; not read for IOCs")

    def malformed(self, field: str, problem: str, instead: str) -> None:
        """An identity field (`field`, named in full) that could not be read as it should: the alert
        stands, with `instead` in its place, noted; and no action runs on it automatically."""
        self.note(f"{field}: {problem}; {instead}")
        self.not_actionable.append(f"{field}: {problem}")

    def alert_notes(self) -> tuple[str, ...]:
        """The notes for the alert, at most MAX_NOTES of them."""
        kept = list(dict.fromkeys(self.notes))
        if len(kept) > MAX_NOTES:
            kept = [*kept[: MAX_NOTES - 1], f"... and {len(kept) - MAX_NOTES + 1} more notes"]
        return tuple(kept)

    # --- what the alert is about, when no action acts on it: never refuse ------------------------------

    def subject(
        self, resource_type: str, parent: Mapping[str, Any], at: str, id_keys: Sequence[str], name: str | None
    ) -> None:
        """Keep what the alert is about (`vtriage.models.Subject`): its type as the detector wrote it, the
        first of `parent[id_keys]` that is a usable id (its ARN first, where the detector gives one), and
        its `name` (read by `subject_name`). With no usable id, nothing is kept, and the note says so."""
        if len(resource_type) > MAX_SUBJECT_TYPE:
            self.note(
                f"{self.where(at)}: a resource type of {len(resource_type):,} characters"
                f" ({shown(resource_type)}); not kept as what the alert is about"
            )
            return
        identifier = next(
            (value for key in id_keys if (value := self._subject_text(parent, key, at, MAX_SUBJECT_ID))),
            None,
        )
        if identifier is None:
            named = " or ".join(self.where(join(at, key)) for key in id_keys)
            self.note(
                f"{named}: missing; the alert does not say which {escaped(resource_type, 64)} it is about"
            )
            return
        self.subjects.append(Subject(type=resource_type, id=identifier, name=name))

    def subject_name(self, parent: Mapping[str, Any], key: str, at: str) -> str | None:
        """`parent[key]` as the short name of what the alert is about; None when absent, and when it is
        no string or too long (noted, with its field)."""
        return self._subject_text(parent, key, at, MAX_SUBJECT_NAME)

    def _subject_text(self, parent: Mapping[str, Any], key: str, at: str, limit: int) -> str | None:
        """`parent[key]` when it is a string of at most `limit` characters that is not blank; otherwise
        None, and a value that is there but unusable is noted with its field and why."""
        value = parent.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            problem = f"expected a string, got {json_kind(value)}"
        elif len(value) > limit:
            problem = f"expected at most {limit:,} characters, got {len(value):,}: {shown(value)}"
        elif not value.strip():
            problem = f"blank: {shown(value)}"
        else:
            return value
        self.note(f"{self.where(join(at, key))}: {problem}; not kept as what the alert is about")
        return None

    def alert_subjects(self) -> tuple[Subject, ...]:
        """What the alert is about that no action acts on, each once, at most MAX_SUBJECTS (the rest
        counted in a note)."""
        kept = list(dict.fromkeys(self.subjects))
        if len(kept) > MAX_SUBJECTS:
            self.note(
                f"the finding names {len(kept)} resources vtriage takes no action on: the first"
                f" {MAX_SUBJECTS} are kept"
            )
        return tuple(kept[:MAX_SUBJECTS])

    def alert_not_actionable(self) -> tuple[str, ...]:
        """Why no action may run on the alert automatically, at most MAX_NOTES reasons."""
        kept = list(dict.fromkeys(self.not_actionable))
        if len(kept) > MAX_NOTES:
            kept = [*kept[: MAX_NOTES - 1], f"... and {len(kept) - MAX_NOTES + 1} more"]
        return tuple(kept)

    # --- identity fields --------------------------------------------------------------------------

    def account_id(self, choices: Sequence[tuple[str, Any]], *, pattern: re.Pattern[str] = ACCOUNT_ID) -> str:
        """The first of the (field, value) `choices` that is an AWS account id; 'unknown' when none is.

        A malformed choice, or none at all, is noted and makes the alert not actionable.
        """
        return self._identity(choices, pattern, "a 12-digit AWS account id", missing_matters=True)

    def region_name(self, choices: Sequence[tuple[str, Any]], *, pattern: re.Pattern[str] = REGION) -> str:
        """The first of the (field, value) `choices` that is an AWS Region; 'unknown' when none is."""
        return self._identity(choices, pattern, "an AWS Region such as 'us-east-1'", missing_matters=True)

    def optional_identity(
        self, choices: Sequence[tuple[str, Any]], pattern: re.Pattern[str], expected: str
    ) -> str:
        """Like `account_id`, for detectors that may have none (outside AWS): a missing value is no fault."""
        return self._identity(choices, pattern, expected, missing_matters=False)

    def _identity(
        self,
        choices: Sequence[tuple[str, Any]],
        pattern: re.Pattern[str],
        expected: str,
        *,
        missing_matters: bool,
    ) -> str:
        malformed: list[tuple[str, Any]] = []
        chosen = UNKNOWN
        for field, value in choices:
            if value is None or value == "":
                continue
            if isinstance(value, str) and pattern.fullmatch(value):
                chosen = value
                break
            malformed.append((field, value))
        instead = f"{chosen!r} stands in"
        for field, value in malformed:
            self.malformed(field, f"expected {expected}, got {shown(value)}", instead)
        if chosen == UNKNOWN and not malformed and missing_matters and choices:
            self.malformed(choices[0][0], "missing", instead)
        return chosen

    def moment(
        self, parent: Mapping[str, Any], key: str, at: str, *, instead: str, required: bool = False
    ) -> datetime | None:
        """`parent[key]` as an ISO 8601 timestamp with a time zone, in UTC; None when absent.

        A time in another form that can still be read (no time zone, seconds or milliseconds since 1970,
        RFC 2822) is read, and noted; one that cannot be read, or a `required` one that is missing, is
        noted (`instead` says what stands in) and gives None. Either way the alert is no longer
        actionable.
        """
        return self._moment(parent.get(key), self.where(join(at, key)), instead=instead, required=required)

    def event_time(self, envelope: Envelope, *, instead: str) -> datetime | None:
        """The event's `time`, read and noted as `moment` reads a required time of the finding, and named
        `time`: the alert's time when the event is all a detector sends (no finding's time of its own)."""
        return self._moment(envelope.time, "time", instead=instead, required=True)

    def _moment(self, value: Any, field: str, *, instead: str, required: bool) -> datetime | None:
        if value is None or value == "":
            if required:
                self.malformed(field, "missing", instead)
            return None
        moment, problem = read_time(value)
        if moment is None:
            self.malformed(field, problem or "unreadable", instead)
            return None
        if problem is not None:
            self.malformed(field, problem, f"read as {moment.isoformat()}")
        return moment

    def envelope_time(self, envelope: Envelope) -> datetime | None:
        """The event's `time`, when it reads as a time (a stand-in for the finding's own)."""
        if envelope.time is None:
            return None
        moment, _ = read_time(envelope.time)
        return moment

    # --- where IOCs belong: never refuse ---------------------------------------------------------

    def branch(self, parent: Mapping[str, Any], key: str, at: str) -> dict[str, Any] | None:
        """`parent[key]`, an object to look for IOCs in: None when absent, and when it is no object
        (noted: the alert goes on without what it would have held)."""
        value = parent.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.note_unread(
            InvalidAlertError(f"expected an object, got {json_kind(value)}", field=self.where(join(at, key)))
        )
        return None

    def branches(self, parent: Mapping[str, Any], key: str, at: str) -> list[tuple[str, dict[str, Any]]]:
        """(path, item) for each object of the list `parent[key]` to look for IOCs in; what is not an
        object is noted and passed over."""
        path = join(at, key)
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.note_unread(
                InvalidAlertError(f"expected a list, got {json_kind(value)}", field=self.where(path))
            )
            return []
        items = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                items.append((f"{path}[{index}]", item))
            elif item is not None:
                self.note_unread(
                    InvalidAlertError(
                        f"expected an object, got {json_kind(item)}", field=self.where(f"{path}[{index}]")
                    )
                )
        return items

    def candidate(self, ioc_type: IocType, parent: Mapping[str, Any], key: str, at: str) -> list[Candidate]:
        """The candidate at `parent[key]`, if the detector filled it in (any JSON value: one that is no
        IOC is kept as skipped). A file hash's algorithm is the one the field's name declares."""
        value = parent.get(key)
        if value is None or value == "":
            return []
        algorithm = declared_algorithm(key) if ioc_type is IocType.FILE else None
        return [Candidate(ioc_type, value, join(at, key), algorithm)]

    def candidate_list(
        self, ioc_type: IocType, parent: Mapping[str, Any], key: str, at: str
    ) -> list[Candidate]:
        """A candidate for each item of the list `parent[key]` (one for a lone value where a list belongs);
        a file hash's algorithm is the one the list's name declares, as for `candidate`."""
        value = parent.get(key)
        if not isinstance(value, list):
            return self.candidate(ioc_type, parent, key, at)
        path = join(at, key)
        algorithm = declared_algorithm(key) if ioc_type is IocType.FILE else None
        return [
            Candidate(ioc_type, item, f"{path}[{index}]", algorithm)
            for index, item in enumerate(value)
            if item is not None and item != ""
        ]

    def iocs(self, candidates: Iterable[Candidate], own: frozenset[str]) -> dict[str, Ioc]:
        """The IOC of every candidate (see `ioc_of`), each kept once at its first place."""
        kept: dict[str, Ioc] = {}
        for candidate in candidates:
            ioc = ioc_of(candidate, own)
            kept.setdefault(ioc.key, ioc)
        return kept

    # --- free text: never refuse ------------------------------------------------------------------

    def free_text_iocs(
        self,
        kept: dict[str, Ioc],
        texts: Iterable[tuple[str, str]],
        own: frozenset[str],
        ignored_values: frozenset[str] = frozenset(),
    ) -> None:
        """Add the IOCs found in prose (path, text) to `kept`: a candidate canonical_ioc refuses is
        dropped, since free text is not a field the detector vouches for, and one of `ignored_values` (the
        finding's own ids, which look like hashes) is never an IOC. A text longer than what is read for
        IOCs (`refang.MAX_FREE_TEXT`) is noted, with where it was cut."""
        for path, text in texts:
            extent = read_extent(text)
            if extent < len(text):
                self.note(
                    f"{self.where(path)}: {len(text):,} characters of free text, read for IOCs only up to"
                    f" character {extent:,} (the cap is {MAX_FREE_TEXT:,}): an IOC after that is not"
                    " looked up"
                )
            for ioc_type, raw in candidates_in_text(text):
                if raw.lower() in ignored_values:
                    continue
                try:
                    ioc = canonical_ioc(ioc_type, raw, path, own)
                except InvalidAlertError:
                    continue
                if ioc.skipped_reason is None and ioc.type is IocType.DOMAIN and ioc.value in own:
                    ioc = ioc.model_copy(update={"skipped_reason": OWN_ADDRESS_REASON})
                kept.setdefault(ioc.key, ioc)


def own_values(values: Iterable[Any]) -> frozenset[str]:
    """The alert's own addresses and host names, as `ioc_of` compares them."""
    return frozenset(_own_form(value) for value in values if isinstance(value, str) and value.strip())


def _own_form(value: str) -> str:
    return value.strip().rstrip(".").lower()


def ioc_of(candidate: Candidate, own: frozenset[str] = frozenset()) -> Ioc:
    """The canonical IOC of a candidate, never a refusal: a value that cannot be one (not a hash, a
    placeholder, a bad address, a hostile or too long value, no string at all) is kept skipped, with the
    reason and its field, shown escaped and cut so that it is safe to store and to print. `own` holds
    the alert's own addresses and host names (see `own_values`): they are skipped as its own."""
    ioc_type, raw, path, algorithm = candidate
    if isinstance(raw, str) and raw.startswith(PLACEHOLDER_PREFIX):
        return Ioc(type=ioc_type, value=escaped(raw), found_at=path, skipped_reason=PLACEHOLDER_REASON)
    try:
        ioc = canonical_ioc(ioc_type, raw, path, own, algorithm=algorithm)
    except InvalidAlertError as error:
        is_own = isinstance(raw, str) and len(raw) <= SHOWN_VALUE_LENGTH and _own_form(raw) in own
        reason = OWN_ADDRESS_REASON if is_own else error.reason
        return Ioc(type=ioc_type, value=escaped(raw), found_at=path, skipped_reason=reason)
    if ioc.skipped_reason is None and ioc.type is IocType.DOMAIN and ioc.value in own:
        return ioc.model_copy(update={"skipped_reason": OWN_ADDRESS_REASON})
    return ioc


def declared_algorithm(key: str) -> str | None:
    """The hash algorithm a field's name declares (`threatFileSha256`, `executableSha256`, `md5`, Falcon's
    `SHA256String`, Workspace's `attachmentsSha256Hash`...): a value of another length is skipped with the
    reason, never looked up as another algorithm (see `canonical_ioc`)."""
    name = key.lower().removesuffix("string").removesuffix("hash")
    for algorithm in ("sha256", "sha512", "sha1", "md5"):
        if name.endswith(algorithm):
            return algorithm
    return None


def read_time(value: Any) -> tuple[datetime | None, str | None]:
    """(the time in UTC, what is wrong with its form) of a timestamp a sender wrote.

    ISO 8601 with a time zone is the form every detector documents: (time, None). Other forms are read
    when they can be (no time zone: UTC; a number: seconds, or milliseconds, since 1970; RFC 2822) with
    what was wrong; what cannot be read gives (None, what was wrong). Never raises.
    """
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None, f"expected an ISO 8601 timestamp, got {json_kind(value)}"
        if isinstance(value, int | float):
            return _epoch(float(value))
        text = value.strip()
        if len(text) > _MAX_TIME_TEXT:
            return None, f"expected an ISO 8601 timestamp, got {shown(value)}"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC), f"{shown(value)} has no time zone: read as UTC"
            return moment.astimezone(UTC), None
        if re.fullmatch(r"[0-9]{1,15}(?:\.[0-9]+)?", text):
            return _epoch(float(text))
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None, f"expected an ISO 8601 timestamp with a time zone, got {shown(value)}"
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC), f"{shown(value)} is not ISO 8601 (read as RFC 2822)"
    except (OverflowError, ValueError, OSError):
        return None, f"a time out of range: {shown(value)}"


def _epoch(seconds: float) -> tuple[datetime | None, str | None]:
    unit = "seconds"
    if abs(seconds) > _MILLISECONDS_ABOVE:
        seconds, unit = seconds / 1000, "milliseconds"
    moment = epoch_time(seconds)
    if moment is None:
        return None, f"a time out of range: {seconds:g} seconds since 1970"
    return moment, f"a number, not ISO 8601: read as {unit} since 1970"


def epoch_time(seconds: float) -> datetime | None:
    """The time `seconds` after 1970-01-01 UTC; None when before it or after the year 9999."""
    if not 0 <= seconds < _END_OF_TIME:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def event_detail(event: Mapping[str, Any]) -> dict[str, Any]:
    """The `detail` object of an EventBridge event, where every detector puts its finding or findings;
    InvalidAlertError naming `detail` when it is missing or no object."""
    return Fields().required_object(event, "detail", "")


def raw_version(value: Any) -> str | None:
    """A finding's version from its update time as written (`raw-...`, shown escaped and cut), for a time
    that does not read; None when there is no such text or number."""
    if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
        return f"raw-{shown(value, 64)}"
    return None


def embedded_flag(value: Any, key: str) -> bool:
    """Whether `value` is a string holding a JSON object whose `key` is true (GuardDuty's sample flag in
    `additionalInfo.value`)."""
    embedded = embedded_json_object(value) if isinstance(value, str) else None
    return embedded is not None and is_true(embedded.get(key))


def embedded_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a string holds (GuardDuty's `additionalInfo.value`), or None."""
    if len(text) > _MAX_EMBEDDED_JSON:
        return None
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def is_true(value: Any) -> bool:
    """JSON true, or the string "true" (flattened fields such as ASFF's ProductFields are strings)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def join(at: str, key: str) -> str:
    """A dotted path."""
    return f"{at}.{key}" if at else key
