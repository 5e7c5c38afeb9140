"""Typed reads of a decoded JSON finding that name the field at fault, shared by the Security Hub and
OCSF parsers, and the step that turns (type, raw value, path) candidates into canonical IOCs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from vtriage.errors import InvalidAlertError
from vtriage.intake.canonical import canonical_ioc
from vtriage.intake.refang import candidates_in_text
from vtriage.models import Ioc, IocType

Candidate = tuple[IocType, str, str]

ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")


class Fields:
    """Reads one document; every error names the field as `prefix` + its dotted path."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def where(self, path: str) -> str:
        """The full name of a field, as the sender's document spells it."""
        return self.prefix + path

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

    def timestamp(
        self, parent: Mapping[str, Any], key: str, at: str, *, required: bool = False
    ) -> datetime | None:
        """An ISO 8601 timestamp with a time zone, in UTC."""
        text = self.text(parent, key, at, required=required)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise InvalidAlertError(
                f"expected an ISO 8601 timestamp with a time zone, got {shown(text)}",
                field=self.where(join(at, key)),
            )
        return moment.astimezone(UTC)

    def account(self, value: Any, path: str) -> str:
        """A 12-digit AWS account id."""
        if not isinstance(value, str) or not ACCOUNT_ID.fullmatch(value):
            raise InvalidAlertError(
                f"expected a 12-digit AWS account id, got {shown(value)}", field=self.where(path)
            )
        return value

    def region(self, value: Any, path: str) -> str:
        """An AWS Region name."""
        if not isinstance(value, str) or not REGION.fullmatch(value):
            raise InvalidAlertError(
                f"expected an AWS Region such as 'us-east-1', got {shown(value)}", field=self.where(path)
            )
        return value

    def iocs(self, candidates: Iterable[Candidate], own_addresses: frozenset[str]) -> dict[str, Ioc]:
        """Canonical IOCs of structured fields, each kept once at its first place; a bad value refuses."""
        kept: dict[str, Ioc] = {}
        for ioc_type, raw, path in candidates:
            try:
                ioc = canonical_ioc(ioc_type, raw, path, own_addresses)
            except InvalidAlertError as error:
                raise InvalidAlertError(error.reason, field=self.where(path)) from None
            kept.setdefault(ioc.key, ioc)
        return kept


def add_free_text_iocs(
    kept: dict[str, Ioc],
    texts: Iterable[tuple[str, str]],
    own_addresses: frozenset[str],
    ignored_values: frozenset[str] = frozenset(),
) -> None:
    """Add the IOCs found in prose (path, text) to `kept`: a candidate canonical_ioc refuses is dropped,
    since free text is not a field the detector vouches for, and one of `ignored_values` (the
    finding's own ids, which look like hashes) is never an IOC."""
    for path, text in texts:
        for ioc_type, raw in candidates_in_text(text):
            if raw.lower() in ignored_values:
                continue
            try:
                ioc = canonical_ioc(ioc_type, raw, path, own_addresses)
            except InvalidAlertError:
                continue
            kept.setdefault(ioc.key, ioc)


def join(at: str, key: str) -> str:
    """A dotted path."""
    return f"{at}.{key}" if at else key


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shown(value: Any, limit: int = 80) -> str:
    """A value quoted and escaped for a message, cut when long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
