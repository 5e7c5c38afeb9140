"""What the readers of detectors outside AWS (CrowdStrike Falcon, Google Workspace) share.

Such an alert names no AWS account or Region: it is placed at `NO_AWS_PLACE` (account and Region alike),
carries its vendor's terms in `Alert.vendor` (`VendorAlert`), and is never acted on in AWS:
`eligibility.Place` refuses it every AWS action (`VendorAlert.outside_aws`). A Workspace alert carries
that reason from intake on (nothing may act on it); a Falcon alert's host may be contained in the
deployment's own Falcon tenant, which eligibility decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from vtriage.display import shown
from vtriage.intake.fields import UNKNOWN_TIME, Fields
from vtriage.models import Alert, Ioc, Resource, Severity, VendorAlert

# The account and the Region of an alert from outside AWS: no AWS account id nor Region name looks so.
NO_AWS_PLACE = "none"
# The longest product, host or user name kept from a vendor's alert; the rest is cut.
MAX_NAME = 200
# The longest console link kept (Falcon's carry the composite id and the customer id).
MAX_CONSOLE_URL = 1000
_URL = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>[^/?#:@\s]+)(?P<rest>[/?#][^\s]*)?")


def name(value: Any, limit: int = MAX_NAME) -> str | None:
    """A vendor's name for something (a product, a host, a user): a non-empty string, cut at `limit`;
    None for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def first_name(*values: Any) -> str | None:
    """The first of the values that is a name (see `name`); the first name of a list counts."""
    for value in values:
        items = value if isinstance(value, list) else [value]
        found = next((name(item) for item in items if name(item) is not None), None)
        if found is not None:
            return found
    return None


def console_url(reader: Fields, value: Any, field: str, hosts: tuple[str, ...]) -> str | None:
    """The alert's link into its vendor's console when it is one: https (or no scheme), on one of `hosts`
    or a name under one. Anything else is left out, noted: a sender's link is never shown as the
    vendor's."""
    if value is None or value == "":
        return None
    match = _URL.fullmatch(value) if isinstance(value, str) and len(value) <= MAX_CONSOLE_URL else None
    host = match["host"].lower() if match else ""
    scheme = (match["scheme"] or "https").lower() if match else ""
    if match is None or scheme != "https" or not any(host == h or host.endswith("." + h) for h in hosts):
        reader.note(
            f"{reader.where(field)}: {shown(value)} is not a link into the vendor's console"
            f" ({', '.join(hosts)}): not shown"
        )
        return None
    return value if match["scheme"] else f"https://{value}"


def outside_aws(reader: Fields, vendor: VendorAlert) -> None:
    """Record on the alert being read that no AWS action may run on it, and why."""
    reader.not_actionable.append(vendor.outside_aws)


def placed_outside_aws(
    reader: Fields,
    *,
    source: str,
    alert_id: str,
    alert_type: str,
    title: str,
    severity: Severity,
    created: datetime | None,
    updated: datetime | None,
    iocs: Iterable[Ioc],
    details: VendorAlert,
    hosts: tuple[Resource, ...] = (),
    sample: bool = False,
) -> Alert:
    """The Alert a vendor reader has read, placed at `NO_AWS_PLACE`: its IOCs each once (at the first
    place they were found), what it is about that no action acts on (a cloud resource), with what the
    reader noted and the reasons against acting it recorded."""
    subjects = reader.alert_subjects()  # before the notes: too many subjects is a note
    created_at = created or updated or UNKNOWN_TIME
    updated_at = updated or created_at
    kept: dict[str, Ioc] = {}
    for ioc in iocs:
        kept.setdefault(ioc.key, ioc)
    return Alert(
        id=alert_id,
        source=source,
        type=alert_type,
        title=title,
        severity=severity,
        created_at=created_at,
        updated_at=updated_at,
        version=updated_at.isoformat() if updated_at is not UNKNOWN_TIME else "unversioned",
        account=NO_AWS_PLACE,
        region=NO_AWS_PLACE,
        resources=hosts,
        subjects=subjects,
        iocs=tuple(kept.values()),
        notes=reader.alert_notes(),
        not_actionable=reader.alert_not_actionable(),
        sample=sample,
        vendor=details,
    )
