"""How a deployment reads alerts: the settings the enrich function and the intake function share."""

from urllib.parse import urlsplit

from pydantic import Field

from vtriage.config import Settings, empty_is_unset
from vtriage.intake import DEFAULT_MAX_FINDINGS, DEFAULT_MAX_IOCS, IntakeOptions


class AlertReadingSettings(Settings):
    """How a deployment reads alerts. The enrich function and the intake function share these settings, so
    that the intake judges a pushed body exactly as the enrich function will read it."""

    # Values the team trusts (comma-separated), IOCs kept per alert, and whether GuardDuty findings that
    # also reach the queue through Security Hub are ignored there.
    ioc_allow_list: str = Field(default="", alias="IOC_ALLOW_LIST")
    max_iocs_per_alert: int = Field(default=DEFAULT_MAX_IOCS, alias="MAX_IOCS_PER_ALERT", ge=1, le=500)
    skip_guardduty_in_securityhub: bool = Field(default=False, alias="SKIP_GUARDDUTY_IN_SECURITYHUB")
    # The most alerts one message may make (the findings beyond are refused with the reason), and whether
    # detectors' sample findings are ignored rather than triaged (they are never acted on either way).
    max_findings_per_message: int = Field(
        default=DEFAULT_MAX_FINDINGS, alias="MAX_FINDINGS_PER_MESSAGE", ge=1, le=10_000
    )
    ignore_sample_findings: bool = Field(default=False, alias="IGNORE_SAMPLE_FINDINGS")
    # The ticket provider's hosts, never looked up nor acted on when a finding names them.
    jira_base_url: str | None = Field(default=None, alias="JIRA_BASE_URL")
    servicenow_base_url: str | None = Field(default=None, alias="SERVICENOW_BASE_URL")
    swimlane_base_url: str | None = Field(default=None, alias="SWIMLANE_BASE_URL")

    _empty_url_is_unset = empty_is_unset("jira_base_url", "servicenow_base_url", "swimlane_base_url")

    @property
    def intake(self) -> IntakeOptions:
        """How alerts are read."""
        allowed = frozenset(value.strip() for value in self.ioc_allow_list.split(",") if value.strip())
        return IntakeOptions(
            allow_list=allowed,
            max_iocs=self.max_iocs_per_alert,
            skip_guardduty_in_securityhub=self.skip_guardduty_in_securityhub,
            ignore_samples=self.ignore_sample_findings,
            max_findings=self.max_findings_per_message,
            never_act_hosts=frozenset(host for url in self.own_urls() if (host := _host(url))),
        )

    def own_urls(self) -> list[str | None]:
        """The URLs of services this deployment uses, whose hosts no finding may make a lookup or target."""
        return [self.jira_base_url, self.servicenow_base_url, self.swimlane_base_url]


def _host(url: str | None) -> str | None:
    """The host of a URL, lower case; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.lower() if host else None
