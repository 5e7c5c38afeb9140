"""Configuration: one typed settings model per function, each in its own module (`vtriage.config.enrich`,
`.remediate`, `.ticket`, `.approval`, `.intake`, `.pollers`) over the parts functions share (`.alerts`,
`.place`, `.falcon`, `.virustotal`), read from the environment when the function starts; and the one
loader of configuration (`load_config`), which also reads the playbooks and the verdict policy files.

A function imports its own settings module only: its cold start never builds another function's settings
classes. A missing or bad setting stops the function with a `ConfigurationError` that names the variable.
"""

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vtriage.errors import ConfigurationError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(
    model: type[ConfigT],
    source: Path | Mapping[str, object],
    *,
    named: str,
    whole: str,
    plural: bool = False,
) -> ConfigT:
    """`source` validated as `model`: a JSON file (a Path), whose document must be an object, or values
    read already (the environment). Raises ConfigurationError starting with `named` (the file and the
    setting that names it, or the settings class): the file cannot be read, is not JSON, or each field at
    fault by its path (`playbooks.0.actions.1.type: ...`; `whole` for the document as a whole). `plural`:
    `named` takes "are" ("playbooks ... are invalid")."""
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"{named}: cannot be read ({error.strerror})") from None
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ConfigurationError(f"{named}: not JSON ({error})") from None
        if not isinstance(document, dict):
            raise ConfigurationError(f"{named}: the document must be a JSON object")
    else:
        document = source
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            name = ".".join(str(part) for part in issue["loc"]) or whole
            if name in TEMPLATE_PARAMETERS:
                name = f"{TEMPLATE_PARAMETERS[name]} ({name})"
            problems.append(f"{name}: {issue['msg']}")
        verb = "are" if plural else "is"
        raise ConfigurationError(f"{named} {verb} invalid: " + "; ".join(problems)) from None


# The template parameters (template.yaml) a person types for an organisation, by the variable each one
# sets: a settings error names the parameter first, then the variable (`MemberAccountIds
# (MEMBER_ACCOUNT_IDS)`), as `vtriage run` names a value CloudFormation's constraint refuses.
TEMPLATE_PARAMETERS = {
    "MEMBER_ACCOUNT_IDS": "MemberAccountIds",
    "ACT_REGIONS": "ActRegions",
    "MEMBER_ROLE_NAME": "MemberRoleName",
    "MEMBER_EXTERNAL_ID": "MemberExternalId",
    "APPROVAL_LINKS_IN_TICKETS": "ApprovalLinksInTickets",
}

_MUST_BE_HTTPS = "must be an https:// URL (http only on loopback)"


def https_url_problem(url: str) -> str | None:
    """Why the URL may not carry a credential or an alert, or None when it may: https only, since
    plain http shows the API key, the ticket credentials and the alert to the network path. http is
    accepted on loopback alone (127.0.0.0/8, ::1, localhost), where local runs and tests serve."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return f"{_MUST_BE_HTTPS}, not a URL"
    if not host:
        return f"{_MUST_BE_HTTPS} naming a host"
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return None
    return f"{_MUST_BE_HTTPS}, not {parts.scheme or 'scheme-less'}"


def is_loopback(host: str) -> bool:
    """True for a host on this machine: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _none_if_empty(cls: type, value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def empty_is_unset(*fields: str) -> Any:
    """A validator making these fields unset (None) when given an empty or blank string: the template
    passes every parameter, and CloudFormation cannot leave a variable out without Fn::If, so an
    unconfigured one arrives as "". Its attribute name must differ from a base class's, which it would
    otherwise replace."""
    return field_validator(*fields, mode="before")(_none_if_empty)


class Settings(BaseModel):
    """Base of every function's settings: fields are filled from environment variables by alias."""

    # Built when a function first reads its settings: a function validates its own class only, never the
    # shared bases it extends (this one, AlertReadingSettings, VirusTotalKeySettings, ...), whose
    # validators its cold start need not build.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    region: str = Field(alias="AWS_REGION", min_length=1)
    # boto3 reads AWS_ENDPOINT_URL by itself; it is kept here so clients built for one endpoint
    # are never reused against another.
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    cases_table: str = Field(alias="CASES_TABLE_NAME", min_length=1)
    retention_days: int = Field(default=90, alias="RETENTION_DAYS", ge=1)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate the settings; raise ConfigurationError naming each missing or bad variable."""
        source = dict(os.environ if environ is None else environ)
        if "AWS_REGION" not in source and "AWS_DEFAULT_REGION" in source:
            source["AWS_REGION"] = source["AWS_DEFAULT_REGION"]
        return load_config(cls, source, named=cls.__name__, whole="settings")


def https_only(url: str) -> str:
    """The URL, stripped; a ValueError (a field's error, to pydantic) when `https_url_problem` finds one."""
    problem = https_url_problem(url)
    if problem:
        raise ValueError(f"{problem}: {url.strip()[:200]!r}")
    return url.strip()
