"""Posts an alert document to a deployed intake function URL, signed with SigV4 as its IAM auth requires:
the way `vtriage send` reaches vtriage, with the sender's ordinary AWS credentials."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

# A function URL names its Region: https://<url id>.lambda-url.<region>.on.aws/
_REGION_IN_URL = re.compile(r"^https://[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws(?::\d+)?/?")
# Function URLs sign as the Lambda service.
SIGNING_SERVICE = "lambda"
_TIMEOUT_S = 30.0


class IntakeUnusableError(RuntimeError):
    """The intake URL could not take the alert at all: no credentials or Region, refused signature or
    permission (Lambda's own 403), the function failing, or no answer."""


@dataclass(frozen=True)
class IntakeAnswer:
    """What the intake function answered: its status and JSON document."""

    status: int
    document: dict[str, Any]


class SignedIntake:
    """An intake function URL, posted to with SigV4-signed requests."""

    def __init__(self, url: str, region: str | None = None) -> None:
        """Sign for `region`, else the URL's own, else the AWS configuration's; the credentials are the
        ordinary ones (environment, profile or role)."""
        self.url = url
        match = _REGION_IN_URL.match(url)
        session = boto3.session.Session(region_name=region or (match.group(1) if match else None))
        if session.region_name is None:
            raise IntakeUnusableError("no AWS Region to sign for: pass --region or set AWS_DEFAULT_REGION")
        credentials = session.get_credentials()
        if credentials is None:
            raise IntakeUnusableError("no AWS credentials to sign with (environment, profile or role)")
        self._credentials = credentials
        self.region = session.region_name
        self._http = requests.Session()

    def post(self, body: str) -> IntakeAnswer:
        """Post one alert document; the intake's answer (202, 400, 405 or 413 with its JSON). Raises
        IntakeUnusableError when Lambda refuses the request or the function cannot answer."""
        data = body.encode("utf-8")
        request = AWSRequest(
            method="POST", url=self.url, data=data, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_SERVICE, self.region).add_auth(request)
        try:
            response = self._http.post(self.url, data=data, headers=dict(request.headers), timeout=_TIMEOUT_S)
        except requests.RequestException as error:
            raise IntakeUnusableError(f"no answer from {self.url}: {type(error).__name__}") from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code in {202, 400, 405, 413} and isinstance(document, dict):
            return IntakeAnswer(response.status_code, document)
        detail = json.dumps(document)[:300] if document is not None else response.text[:300]
        if response.status_code == 403:
            raise IntakeUnusableError(
                f"{self.url} refused the request (403): the signature, or the caller's permission "
                f"(attach the stack's AlertSendersPolicy): {detail}"
            )
        raise IntakeUnusableError(f"{self.url} answered {response.status_code}: {detail}")
