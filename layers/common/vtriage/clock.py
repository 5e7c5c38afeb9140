"""The clock: the current time every function and fake reads (`utc_now`), and when the VirusTotal quota's
windows turn over: the moments a record refused by the quota is deferred to (`vtriage.enrich`) and the
quota table's windows end at (`vtriage.adapters.quota`); and the times vendors' APIs write
(`rfc3339_time`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def next_minute(moment: datetime) -> datetime:
    """The start of the minute after `moment`, in UTC: when a minute quota reopens."""
    utc = moment.astimezone(UTC)
    return utc.replace(second=0, microsecond=0) + timedelta(minutes=1)


def next_utc_midnight(moment: datetime) -> datetime:
    """The next 00:00 UTC after `moment`: when VirusTotal's daily quota reopens."""
    utc = moment.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def rfc3339_time(value: object) -> datetime | None:
    """An RFC 3339 time as a vendor's API writes it (`2024-05-01T10:00:00.123456789Z`), timezone-aware
    (UTC when it names no zone; fractions beyond microseconds cut); None when it is no such time."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
