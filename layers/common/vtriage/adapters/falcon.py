"""CrowdStrike Falcon's API: an OAuth2 client (`FalconClient`), the Alerts API as an `AlertSource`, and
host containment as a `ResponseActuator` (`FalconHostContainment`).

`FalconClient` holds what every Falcon API call needs, so that other services of the same API (host
containment: `POST /devices/entities/devices-actions/v2?action_name=contain|lift_containment`) add a
method on it and nothing else:

- one base URL per Falcon cloud (`FALCON_CLOUDS`: us-1, us-2, eu-1, us-gov-1);
- OAuth2 client credentials: `POST /oauth2/token` with the form fields `client_id` and `client_secret`
  answers a bearer token valid `expires_in` seconds (CrowdStrike's are valid 30 minutes), reused until
  shortly before it expires;
- a 401 drops the token, takes a new one and sends the request once more; a second 401, or the token
  endpoint refusing the credentials, raises `FalconAuthError`, and a 403 (the API client lacks the
  scope) too;
- a 429 waits as CrowdStrike asks (`X-RateLimit-RetryAfter`: the epoch second from which requests are
  accepted again; `Retry-After`: seconds), at most `max_wait_seconds` a time and `max_retries` times,
  then raises `TransientError`; 5xx answers, timeouts and refused connections raise `TransientError`;
  any other answer raises `FalconApiError` with the status and what CrowdStrike said.

Host containment reads the device first (`GET /devices/entities/devices/v2?ids=<device id>`: its `cid`,
`hostname`, `tags` with the grouping tags as `FalconGroupingTags/<tag>`, and its containment `status`:
`normal`, `containment_pending`, `contained` or `lift_containment_pending`), then acts with
`POST /devices/entities/devices-actions/v2?action_name=contain` (or `lift_containment`) and the body
`{"ids": [<device id>]}`, which CrowdStrike answers 202 naming the devices acted on in `resources[].id`.

No message built here holds the client secret or a token. Checked against CrowdStrike's API reference
(the OAuth2, Alerts and Hosts collections) and FalconPy's endpoint definitions (`_endpoint/_oauth2.py`,
`_endpoint/_alerts.py`, `_endpoint/_hosts.py`: GetDeviceDetailsV2, PerformActionV2; `_enum/_base_url.py`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from vtriage import __version__
from vtriage.adapters.retry_after import retry_after_seconds
from vtriage.clock import rfc3339_time
from vtriage.display import one_line
from vtriage.errors import ConfigurationError, TransientError, VtriageError
from vtriage.models import Action, ActionStatus
from vtriage.ports import PolledAlert
from vtriage.protected_tag import is_protected_key

# The API's base URL of each Falcon cloud (FalconPy's BaseURL enumeration).
FALCON_CLOUDS: Mapping[str, str] = {
    "us-1": "https://api.crowdstrike.com",
    "us-2": "https://api.us-2.crowdstrike.com",
    "eu-1": "https://api.eu-1.crowdstrike.com",
    "us-gov-1": "https://api.laggar.gcw.crowdstrike.com",
}
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a password)
ALERT_IDS_PATH = "/alerts/queries/alerts/v2"
ALERT_ENTITIES_PATH = "/alerts/entities/alerts/v2"
DEVICES_PATH = "/devices/entities/devices/v2"
DEVICE_ACTIONS_PATH = "/devices/entities/devices-actions/v2"
CONTAIN = "contain"
LIFT_CONTAINMENT = "lift_containment"
# A device's containment `status`, as the Hosts API gives it.
NORMAL = "normal"
CONTAINMENT_PENDING = "containment_pending"
CONTAINED = "contained"
LIFT_CONTAINMENT_PENDING = "lift_containment_pending"
# A Falcon device id (the sensor's agent id, AID): 32 hexadecimal digits.
DEVICE_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_TIMEOUT = (3.05, 20.0)
USER_AGENT = f"vtriage/{__version__}"
# A token is taken anew this long before CrowdStrike says it expires (or at half its life, if shorter).
TOKEN_MARGIN_SECONDS = 60.0
# CrowdStrike documents `limit` up to 10,000 for the query, the entities call takes at most 1,000 ids.
MAX_PAGE_SIZE = 1000
_MAX_MESSAGE = 300


class FalconApiError(VtriageError):
    """CrowdStrike refused a request: sending it again unchanged cannot help."""

    def __init__(self, http_status: int, message: str) -> None:
        self.http_status = http_status
        self.message = message
        super().__init__(f"CrowdStrike Falcon refused the request (HTTP {http_status}): {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their constructor arguments.
        return (self.__class__, (self.http_status, self.message))


class FalconAuthError(ConfigurationError):
    """CrowdStrike refused the API client (its id or secret, or the scope a call needs): a person must
    fix the secret or the API client's scopes."""


@dataclass(frozen=True)
class FalconCredentials:
    """An API client's id and secret (Falcon console: Support and resources, API clients and keys)."""

    client_id: str
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.client_id.strip() or not self.client_secret.strip():
            raise ValueError("both a client id and a client secret are required")


@dataclass
class _Token:
    value: str = field(repr=False)
    renew_at: float


class FalconClient:
    """Calls CrowdStrike Falcon's API with a bearer token taken and renewed as needed (see the module
    docstring). One client per container: its token outlives an invocation."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        credentials: FalconCredentials,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_wait_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`base_url` is the cloud's (`FALCON_CLOUDS`); the clocks and `sleep` are for tests."""
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._token: _Token | None = None

    def __repr__(self) -> str:
        return f"FalconClient(base_url={self._base_url!r})"

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        """GET `path` with these query parameters; the answer's JSON object."""
        return self.call("GET", path, params=params)

    def post(
        self, path: str, body: Mapping[str, Any], params: Mapping[str, str | int] | None = None
    ) -> dict[str, Any]:
        """POST this JSON body to `path`; the answer's JSON object."""
        return self.call("POST", path, params=params, body=body)

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The device's details as the Hosts API gives them (`GET /devices/entities/devices/v2`), or None
        when this API client's Falcon knows no such device (a 404, or no entity with its id)."""
        try:
            document = self.get(DEVICES_PATH, {"ids": device_id})
        except FalconApiError as error:
            if error.http_status == 404:
                return None
            raise
        for entity in document.get("resources") or []:
            if isinstance(entity, dict) and str(entity.get("device_id", "")).lower() == device_id:
                return entity
        return None

    def device_action(self, action_name: str, device_id: str) -> None:
        """Ask Falcon to take an action on the device (`contain`, `lift_containment`); FalconApiError
        when CrowdStrike does not name the device among those it acts on."""
        document = self.post(DEVICE_ACTIONS_PATH, {"ids": [device_id]}, {"action_name": action_name})
        acted_on = {
            str(entity.get("id", "")).lower()
            for entity in document.get("resources") or []
            if isinstance(entity, dict)
        }
        if device_id not in acted_on:
            errors = document.get("errors")
            said = "; ".join(
                str(error.get("message"))
                for error in (errors if isinstance(errors, list) else [])
                if isinstance(error, dict) and error.get("message")
            )
            raise FalconApiError(200, f"{action_name} of device {device_id}: {said or 'not acted on'}")

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one API request with the bearer token, renewing it once on a 401 and waiting out 429s;
        the answer's JSON object, or a named error (see the module docstring)."""
        renewed = False
        waits = 0
        while True:
            response = self._send(
                method,
                path,
                params=params,
                json_body=body,
                headers={"Authorization": f"Bearer {self._bearer()}"},
            )
            status = response.status_code
            if status == 401 and not renewed:
                self._token = None
                renewed = True
                continue
            if status == 429 and waits < self._max_retries:
                waits += 1
                self._sleep(self._wait_for(response, waits))
                continue
            return self._answer(response, f"{method} {path}")

    def _bearer(self) -> str:
        if self._token is None or self._clock() >= self._token.renew_at:
            self._token = self._new_token()
        return self._token.value

    def _new_token(self) -> _Token:
        waits = 0
        while True:
            response = self._send(
                "POST",
                TOKEN_PATH,
                form={
                    "client_id": self._credentials.client_id,
                    "client_secret": self._credentials.client_secret,
                },
            )
            if response.status_code == 429 and waits < self._max_retries:
                waits += 1
                self._sleep(self._wait_for(response, waits))
                continue
            if response.status_code in (400, 401, 403):
                raise FalconAuthError(
                    f"CrowdStrike Falcon refused the API client's credentials (HTTP {response.status_code}): "
                    f"{self._said(response)}. Check the client id and secret in the secret, and that the "
                    "API client exists in this Falcon cloud"
                )
            document = self._answer(response, f"POST {TOKEN_PATH}")
            token = document.get("access_token")
            lifetime = document.get("expires_in")
            if not isinstance(token, str) or not token:
                raise FalconApiError(response.status_code, "the token endpoint answered no access_token")
            seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 1799.0
            margin = min(TOKEN_MARGIN_SECONDS, seconds / 2)
            return _Token(token, self._clock() + seconds - margin)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        try:
            return self._session.request(
                method,
                self._base_url + path,
                params=params,
                json=json_body,
                data=form,
                headers=all_headers,
                timeout=self._timeout,
                # A redirect would carry the token or the credentials to wherever it points.
                allow_redirects=False,
            )
        except requests.Timeout as error:
            raise TransientError(
                f"CrowdStrike Falcon did not answer in time ({type(error).__name__})"
            ) from None
        except requests.ConnectionError as error:
            raise TransientError(f"cannot connect to CrowdStrike Falcon ({type(error).__name__})") from None
        except requests.RequestException as error:
            raise FalconApiError(0, f"cannot send the request ({type(error).__name__})") from None

    def _wait_for(self, response: requests.Response, attempt: int) -> float:
        """How long to wait before retrying a 429: what CrowdStrike asks, bounded; else a back-off."""
        asked = _retry_after(response.headers, self._wall_clock())
        wait = asked if asked is not None else float(2 ** (attempt - 1))
        return max(0.0, min(wait, self._max_wait))

    def _answer(self, response: requests.Response, what: str) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                document = response.json()
            except ValueError:
                raise FalconApiError(status, f"{what} answered something other than JSON") from None
            if not isinstance(document, dict):
                raise FalconApiError(status, f"{what} answered JSON that is not an object")
            return document
        said = self._said(response)
        if status == 429:
            raise TransientError(
                f"CrowdStrike Falcon kept refusing {what} for its rate limit (HTTP 429) after "
                f"{self._max_retries} waits: {said}",
                retry_after=_retry_after(response.headers, self._wall_clock()),
            )
        if status >= 500:
            raise TransientError(f"CrowdStrike Falcon is unavailable (HTTP {status}): {said}")
        if status in (401, 403):
            raise FalconAuthError(
                f"CrowdStrike Falcon refused {what} (HTTP {status}) with a fresh token: {said}. The API "
                "client needs the scope Alerts: Read (the poller), Hosts: Read and Write (host containment)"
            )
        raise FalconApiError(status, f"{what}: {said}")

    def _said(self, response: requests.Response) -> str:
        """CrowdStrike's error messages (`errors[].message`), else the body, on one short line."""
        try:
            document = response.json()
        except ValueError:
            document = None
        messages: list[str] = []
        if isinstance(document, dict) and isinstance(document.get("errors"), list):
            messages = [
                str(error.get("message"))
                for error in document["errors"]
                if isinstance(error, dict) and error.get("message")
            ]
        text = "; ".join(messages) or response.text or response.reason or "no message"
        for secret in (self._credentials.client_secret, self._token.value if self._token else ""):
            if secret:
                text = text.replace(secret, "[redacted]")
        line = " ".join(text.split())
        return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from CrowdStrike's `X-RateLimit-RetryAfter` (an epoch second) or `Retry-After`."""
    value = headers.get("X-RateLimit-RetryAfter")
    if value is not None:
        try:
            moment = float(value.strip())
        except ValueError:
            moment = math.nan
        if math.isfinite(moment):
            # An epoch second; a small number can only be a delay in seconds.
            return max(0.0, moment - now) if moment > 1e9 else max(0.0, moment)
    return retry_after_seconds(headers.get("Retry-After"))


class FalconAlertSource:
    """The Alerts API (v2) as an `AlertSource`: the composite ids of the alerts created since a time,
    oldest first (`GET /alerts/queries/alerts/v2` with the FQL filter `created_timestamp:>='<time>'`,
    sorted `created_timestamp|asc`, paged by `offset` and `limit`), then each page's entities
    (`POST /alerts/entities/alerts/v2` with `{"composite_ids": [...]}`), yielded in the query's order."""

    def __init__(self, client: FalconClient, page_size: int = 100, extra_filter: str = "") -> None:
        """`extra_filter` is further FQL ANDed to the time filter (`product:'epp'`); empty for none."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
        self._client = client
        self._page_size = page_size
        self._extra_filter = extra_filter.strip()

    def alerts_created_since(self, since: datetime) -> Iterator[PolledAlert]:
        """The alerts created at or after `since`, oldest first, page by page."""
        fql = f"created_timestamp:>='{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        if self._extra_filter:
            fql = f"{fql}+{self._extra_filter}"
        offset = 0
        while True:
            page = self._client.get(
                ALERT_IDS_PATH,
                {"filter": fql, "sort": "created_timestamp|asc", "limit": self._page_size, "offset": offset},
            )
            ids = [value for value in page.get("resources") or [] if isinstance(value, str) and value]
            if not ids:
                return
            yield from self._entities(ids)
            offset += len(ids)
            total = _total(page)
            if total is not None and offset >= total:
                return

    def _entities(self, ids: Sequence[str]) -> Iterator[PolledAlert]:
        document = self._client.post(ALERT_ENTITIES_PATH, {"composite_ids": list(ids)})
        found: dict[str, dict[str, Any]] = {}
        for entity in document.get("resources") or []:
            if isinstance(entity, dict):
                found.setdefault(str(entity.get("composite_id") or ""), entity)
        for composite_id in ids:
            entity = found.get(composite_id)
            if entity is not None:
                # An alert hidden or deleted between the two calls is simply not listed.
                yield PolledAlert(
                    alert_id=composite_id,
                    created_at=rfc3339_time(entity.get("created_timestamp")),
                    # ASCII, all else escaped: a vendor's text may decode to a lone surrogate or a
                    # noncharacter, which SQS (or UTF-8) cannot take raw; the enrich function decodes it.
                    body=json.dumps(entity),
                )


def _total(page: Mapping[str, Any]) -> int | None:
    meta = page.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    total = pagination.get("total") if isinstance(pagination, dict) else None
    return total if isinstance(total, int) else None


class FalconHostContainment:
    """`ResponseActuator` for CONTAIN_HOST: network-contains a Falcon host (the target: its device id) in
    the deployment's own Falcon tenant; rollback lifts the containment this action made.

    The host is read live before anything is done (never from the alert): it must exist in this API
    client's Falcon and belong to the tenant `cid`, and a host carrying `protected_tag` among its grouping
    tags is left alone. A host contained already (or being contained) is left as it is: the action is done
    and changes nothing. A host whose containment a person is lifting is not contained again. `before` and
    `after` record the device id, the tenant, the host name and the containment status. The client is
    made when the first action needs it (its credentials come from a secret)."""

    def __init__(self, client: Callable[[], FalconClient], cid: str, protected_tag: str) -> None:
        """Take the way to the Falcon API client, the tenant's customer id (lower case) and the
        protected grouping tag (`FalconGroupingTags/<tag>`)."""
        self._client = client
        self._cid = cid
        self._protected_tag = protected_tag

    def run(self, action: Action, dry_run: bool) -> Action:
        """Contain the host unless it is contained already (DONE, nothing changed), protected, another
        tenant's or being released (SKIPPED), or gone (FAILED); in dry run, say what would happen."""
        device_id = action.target.strip().lower()
        if not DEVICE_ID.fullmatch(device_id):
            return action.with_outcome(
                ActionStatus.FAILED, f"not contained: {one_line(action.target, 80)} is not a Falcon device id"
            )
        client = self._client()
        device = client.device(device_id)
        if device is None:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"not contained: no device {device_id} in Falcon CID {self._cid} (removed, or never there)",
            )
        before = _host_state(device, device_id)
        host = _host(before)
        refused = self._refusal(device, before, host)
        if refused is not None:
            return action.with_outcome(ActionStatus.SKIPPED, refused)
        status = before["status"]
        if status in (CONTAINED, CONTAINMENT_PENDING):
            detail = f"already contained: {host} is {status} in Falcon CID {self._cid}"
            return action.with_outcome(ActionStatus.DONE, detail, before, before)
        if dry_run:
            detail = f"dry run, nothing changed: would contain {host} in Falcon CID {self._cid}"
            return action.with_outcome(ActionStatus.DRY_RUN, detail, before)
        client.device_action(CONTAIN, device_id)
        after = {**before, "status": CONTAINMENT_PENDING}
        detail = (
            f"contained: {host} in Falcon CID {self._cid} (status {CONTAINMENT_PENDING} until its sensor "
            "applies it; it then talks only to the CrowdStrike cloud and what the containment policy allows)"
        )
        return action.with_outcome(ActionStatus.DONE, detail, before, after)

    def rollback(self, action: Action) -> Action:
        """Lift the containment if this action contained the host; leave a host that was contained before
        it, or is no longer contained, as it is."""
        before = action.before or {}
        device_id = str(before.get("device_id") or "")
        if not device_id or "status" not in before:
            return action.model_copy(update={"detail": "nothing to undo: no state of the host was recorded"})
        host = _host(before)
        if before["status"] in (CONTAINED, CONTAINMENT_PENDING):
            detail = f"already as before: {host} was {before['status']} before this case acted"
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=before)
        client = self._client()
        device = client.device(device_id)
        if device is None:
            return action.with_outcome(
                ActionStatus.FAILED, f"rollback failed: no device {device_id} in Falcon CID {self._cid}"
            )
        now = _host_state(device, device_id)
        if now["cid"] != self._cid:
            return action.with_outcome(
                ActionStatus.FAILED,
                f"rollback failed: {_host(now)} is in Falcon CID {now['cid']}, not {self._cid}",
            )
        if now["status"] not in (CONTAINED, CONTAINMENT_PENDING):
            detail = f"already as before: {_host(now)} is {now['status']} in Falcon CID {self._cid}"
            return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=now)
        client.device_action(LIFT_CONTAINMENT, device_id)
        after = {**now, "status": LIFT_CONTAINMENT_PENDING}
        detail = f"rolled back: lifted the containment of {_host(now)} in Falcon CID {self._cid}"
        return action.with_outcome(ActionStatus.ROLLED_BACK, detail, after=after)

    def _refusal(self, device: Mapping[str, Any], state: Mapping[str, str], host: str) -> str | None:
        """Why the live host is not to be contained: another tenant's, protected, or being released."""
        if state["cid"] != self._cid:
            return (
                f"not contained: {host} is in Falcon CID {state['cid']}, not this deployment's ({self._cid}):"
                " vtriage contains hosts only in its own Falcon tenant"
            )
        tags = device.get("tags")
        grouping = [str(tag) for tag in tags] if isinstance(tags, list) else []
        if any(is_protected_key(tag, self._protected_tag) for tag in grouping):
            return f"not contained: {host} carries the protected grouping tag {self._protected_tag}"
        status = state["status"]
        if status == LIFT_CONTAINMENT_PENDING:
            return (
                f"not contained: {host}'s containment is being lifted in Falcon ({status}): a person "
                "released it, and vtriage does not contain it again"
            )
        if status not in (NORMAL, CONTAINED, CONTAINMENT_PENDING):
            return f"not contained: {host} has a containment status vtriage does not know ({status})"
        return None


def _host_state(device: Mapping[str, Any], device_id: str) -> dict[str, str]:
    """What a containment records of the live host: its device id, tenant, name and status."""
    return {
        "device_id": device_id,
        "cid": str(device.get("cid") or "").lower(),
        "hostname": str(device.get("hostname") or ""),
        "status": str(device.get("status") or "").lower(),
    }


def _host(state: Mapping[str, Any]) -> str:
    """`host <name> (<device id>)`, the name escaped: the host set it."""
    name = one_line(state.get("hostname") or "with no name", 100)
    return f"host {name} ({state['device_id']})"
