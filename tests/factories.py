"""Test data: an alert and a case built with every field a test does not care about filled in. The
ports' in-memory fakes are in `vtriage.fakes`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vtriage.models import Alert, Case, Resource, ResourceType, Severity


def make_case(alert: Alert, **fields: Any) -> Case:
    """A case for the alert, created at the alert's update time, with any field overridden."""
    defaults: dict[str, Any] = {
        "case_id": alert.case_id,
        "alert": alert,
        "created_at": alert.updated_at,
        "updated_at": alert.updated_at,
    }
    return Case(**{**defaults, **fields})


def make_alert(**fields: Any) -> Alert:
    """A GuardDuty SSH brute-force alert on one instance, with any field overridden."""
    defaults: dict[str, Any] = {
        "id": "5eb7d1a3a1f1f1ce3f4e3a1d7b8c9e0f",
        "source": "guardduty",
        "type": "UnauthorizedAccess:EC2/SSHBruteForce",
        "title": "198.51.100.7 is performing SSH brute force attacks against i-0abc1234def567890",
        "severity": Severity(score=8),
        "created_at": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        "updated_at": datetime(2024, 5, 1, 9, 45, tzinfo=UTC),
        "version": "2024-05-01T09:45:00Z",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": (
            Resource(
                type=ResourceType.INSTANCE,
                id="i-0abc1234def567890",
                vpc_id="vpc-0a1b2c3d",
                network_interface_ids=("eni-0a1b2c3d4e5f60718",),
                addresses=("10.0.1.25",),
            ),
        ),
    }
    return Alert(**{**defaults, **fields})
