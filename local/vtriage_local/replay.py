"""A VirusTotal-compatible replay server on loopback: recorded API v3 answers, same paths, headers and errors.

It serves `GET /api/v3/{files|urls|domains|ip_addresses}/{id}` from a folder of recordings laid out as
`DIR/<collection>/<name>.json`, each a VirusTotal answer `{"data": {...}}`. A recording is found by its
`data.id`, by its file name, for files by any of md5, sha1 or sha256, and for URLs by the URL identifier
of `attributes.url`. Anything else answers as VirusTotal does: 404 `NotFoundError`. A recording's
`attributes.gti_assessment` is served only to a request carrying an `x-tool` header, as Google Threat
Intelligence does.

It answers VT Augment's `GET /api/v3/widget/url?query=<observable>` as VirusTotal documents it, for a
recorded observable (a hash, URL, domain or IP): `{"data": {"url":
"https://www.virustotal.com/ui/widget/html/<token>", "detection_ratio": {"detections", "total"}}}`, the
ratio read from the recording's `last_analysis_stats` (the token is the replay's own and renders nothing
on VirusTotal). An observable it has no recording of answers 404 `NotFoundError`; no query, 400
`BadRequestError`; with `vt_augment=False`, a key whose licence lacks VT Augment, 403 `ForbiddenError`.
`widget_requests` counts them, so that a test can tell who minted widgets and when.

For tests of the client's resilience it can require an API key (401 `AuthenticationRequiredError` /
`WrongCredentialsError`), add latency, and inject faults (429 `QuotaExceededError`, 500, 503, and a
timeout) at random with a seeded generator, or on the next requests with `fail_next`.

Files are read once, when the server is built, and only from the recordings folder: a request never
touches the file system.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import random
import re
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vtriage.virustotal.objects import url_id

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v3"
WIDGET_PATH = f"{API_PREFIX}/widget/url"
WIDGET_PAGE = "https://www.virustotal.com/ui/widget/html/"
COLLECTIONS = ("files", "urls", "domains", "ip_addresses")
FAULTS = ("429", "500", "503", "timeout")

_NOUNS = {"files": "File", "urls": "URL", "domains": "Domain", "ip_addresses": "IP address"}
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32,64}$")


def bundled_recordings() -> Path:
    """The recordings shipped with the project (local/vtriage_local/recordings), served by default."""
    return Path(__file__).resolve().parent / "recordings"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the replay server."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    """An error answer in VirusTotal's shape: `{"error": {"code", "message"}}`."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Answer(status, body, headers or {})


class RecordingIndex:
    """The recordings of one folder, indexed by every identifier VirusTotal accepts for them."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ValueError(f"the recordings folder {root} does not exist")
        self._bodies: dict[tuple[str, str], bytes] = {}
        self.count = 0
        for collection in COLLECTIONS:
            folder = self.root / collection
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    self._load(collection, path)

    def find(self, collection: str, identifier: str) -> bytes | None:
        """The recorded answer for the identifier in the collection, or None."""
        return self._bodies.get((collection, _normalise(collection, identifier)))

    def _load(self, collection: str, path: Path) -> None:
        resolved = path.resolve()
        if not resolved.is_file() or not resolved.is_relative_to(self.root):
            logger.warning("skipping %s: it points outside the recordings folder %s", path, self.root)
            return
        body = resolved.read_bytes()
        try:
            document = json.loads(body)
        except ValueError as error:
            raise ValueError(f"{path} is not JSON: {error}") from None
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict):
            self.count += 1
            for identifier in _identifiers(collection, path, data):
                key = (collection, _normalise(collection, identifier))
                if self._bodies.setdefault(key, body) is not body:
                    logger.warning("%s: %s/%s is already served by another recording", path, *key)
            return
        raise ValueError(f"{path} is not a VirusTotal answer: no `data` object")


def _identifiers(collection: str, path: Path, data: dict[str, Any]) -> list[str]:
    """Every identifier under which VirusTotal would find this object."""
    attributes = data.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    identifiers = [str(data["id"])] if data.get("id") else []
    identifiers.append(path.name.removesuffix(".json"))
    if collection == "files":
        identifiers += [str(attributes[h]) for h in ("md5", "sha1", "sha256") if attributes.get(h)]
    if collection == "urls" and isinstance(attributes.get("url"), str):
        identifiers.append(url_id(attributes["url"]))
    return identifiers


def _normalise(collection: str, identifier: str) -> str:
    """Hashes, domains and IPs are case-insensitive; a URL's base64 identifier is not."""
    if collection != "urls" or _HEX_ID.match(identifier):
        return identifier.lower()
    return identifier


class ReplayServer:
    """A VirusTotal-compatible HTTP server on loopback, serving recordings; a context manager."""

    def __init__(
        self,
        recordings: Path,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        faults: dict[str, float] | None = None,
        seed: int = 0,
        timeout_sleep_s: float = 12.0,
        retry_after_s: int | None = None,
        vt_augment: bool = True,
    ) -> None:
        """Load the recordings. `faults` maps "429", "500", "503" or "timeout" to a probability per
        request; a timeout holds the answer for `timeout_sleep_s` (longer than a client's read timeout
        by default); `retry_after_s` adds a Retry-After header to injected 429 and 503 answers;
        `vt_augment=False` answers widget requests as VirusTotal answers a key not licensed for them."""
        _require_loopback(host)
        self._faults = checked_faults(faults or {})
        if latency_ms < 0 or timeout_sleep_s < 0:
            raise ValueError("latency_ms and timeout_sleep_s must not be negative")
        self.index = RecordingIndex(Path(recordings))
        self._api_key = api_key
        self._host = host
        self._port = port
        self._latency_s = latency_ms / 1000
        self._timeout_sleep_s = timeout_sleep_s
        self._retry_after_s = retry_after_s
        self._vt_augment = vt_augment
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._request_count = 0
        self._widget_requests = 0
        self._scripted: deque[str] = deque()
        self._stopping = threading.Event()
        self._httpd: _ReplayHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The API root to give a client: "http://127.0.0.1:PORT/api/v3"."""
        if self._httpd is None:
            raise RuntimeError("the replay server is not started")
        host, port = self._httpd.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else host
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}{API_PREFIX}"

    @property
    def request_count(self) -> int:
        """Every request received so far, whatever it was answered."""
        with self._lock:
            return self._request_count

    @property
    def widget_requests(self) -> int:
        """The VT Augment widget URLs asked for so far (`GET /api/v3/widget/url`), whatever answered."""
        with self._lock:
            return self._widget_requests

    def fail_next(self, fault: str, count: int = 1) -> None:
        """Answer the next `count` requests (after the API key check) with this fault, before any
        random fault: a deterministic script for tests."""
        checked_faults({fault: 0.0})
        with self._lock:
            self._scripted.extend([fault] * count)

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        if self._httpd is not None:
            return
        self._stopping.clear()
        httpd = _ReplayHTTPServer((self._host, self._port), _Handler)
        httpd.replay = self
        self._httpd = httpd
        # A short poll keeps stop() quick: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="vt-replay", daemon=True
        )
        self._thread.start()
        logger.info("VirusTotal replay server on %s (%d recordings)", self.base_url, self.index.count)

    def stop(self) -> None:
        """Stop serving and release the port; requests held by latency or a timeout end at once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def answer(self, path: str, api_key: str | None, tool: str | None = None) -> Answer:
        """The answer to `GET path` sent with these x-apikey and x-tool headers (None when absent)."""
        parts = urllib.parse.urlsplit(path)
        with self._lock:
            self._request_count += 1
            if parts.path == WIDGET_PATH:
                self._widget_requests += 1
        if self._latency_s:
            self._stopping.wait(self._latency_s)
        if self._api_key is not None:
            if not api_key:
                return error_answer(401, "AuthenticationRequiredError", "X-Apikey header is missing")
            if not hmac.compare_digest(api_key.encode(), self._api_key.encode()):
                return error_answer(401, "WrongCredentialsError", "Wrong API key")
        fault = self._draw_fault()
        if fault is not None:
            return self._fault_answer(fault)
        if parts.path == WIDGET_PATH:
            return self._widget(urllib.parse.parse_qs(parts.query).get("query", [""])[0])
        return self._lookup(parts.path, with_gti_assessment=bool(tool))

    def _widget(self, query: str) -> Answer:
        """VT Augment's widget URL for a recorded observable, with its detection ratio."""
        if not self._vt_augment:
            return error_answer(
                403, "ForbiddenError", "You are not allowed to perform the requested operation"
            )
        if not query:
            return error_answer(400, "BadRequestError", "Missing query parameter")
        collection, identifier = _observable(query)
        body = self.index.find(collection, identifier)
        if body is None:
            return error_answer(404, "NotFoundError", f'{_NOUNS[collection]} "{query}" not found')
        attributes = json.loads(body)["data"].get("attributes")
        stats = attributes.get("last_analysis_stats") if isinstance(attributes, dict) else None
        counts = {k: v for k, v in stats.items() if isinstance(v, int)} if isinstance(stats, dict) else {}
        token = base64.urlsafe_b64encode(f"replay||{collection}||{identifier}".encode()).decode()
        data = {
            "url": WIDGET_PAGE + token,
            "detection_ratio": {"detections": counts.get("malicious", 0), "total": sum(counts.values())},
        }
        return Answer(200, json.dumps({"data": data}).encode())

    def _lookup(self, path: str, *, with_gti_assessment: bool) -> Answer:
        """The recording at /api/v3/{collection}/{id}, or VirusTotal's 404."""
        parts = path[len(API_PREFIX) + 1 :].split("/") if path.startswith(API_PREFIX + "/") else []
        if len(parts) == 2 and parts[0] in COLLECTIONS and parts[1]:
            collection, identifier = parts[0], urllib.parse.unquote(parts[1])
            body = self.index.find(collection, identifier)
            if body is not None:
                return Answer(200, body if with_gti_assessment else _without_gti_assessment(body))
            return error_answer(404, "NotFoundError", f'{_NOUNS[collection]} "{identifier}" not found')
        return error_answer(404, "NotFoundError", f'Resource "{urllib.parse.unquote(path)}" not found')

    def _draw_fault(self) -> str | None:
        """The fault for this request: the next scripted one, else one drawn with the seeded RNG."""
        with self._lock:
            if self._scripted:
                return self._scripted.popleft()
            if not self._faults:
                return None
            draw = self._rng.random()
        threshold = 0.0
        for fault in FAULTS:
            threshold += self._faults.get(fault, 0.0)
            if draw < threshold:
                return fault
        return None

    def _fault_answer(self, fault: str) -> Answer:
        retry_after = {"Retry-After": str(self._retry_after_s)} if self._retry_after_s is not None else {}
        if fault == "429":
            return error_answer(
                429,
                "QuotaExceededError",
                "Quota exceeded (replay server: injected fault)",
                retry_after,
            )
        if fault == "503":
            return error_answer(
                503, "TransientError", "Transient server error (replay server: injected fault)", retry_after
            )
        if fault == "500":
            return error_answer(500, "InternalError", "Internal server error (replay server: injected fault)")
        # A timeout: hold the answer longer than the client waits, then give up as VirusTotal would.
        self._stopping.wait(self._timeout_sleep_s)
        return error_answer(504, "DeadlineExceededError", "The operation took too long to complete")


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    replay: ReplayServer


class _Handler(BaseHTTPRequestHandler):
    server: _ReplayHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "vtriage-replay"

    def do_GET(self) -> None:
        """Answer a GET from the recordings."""
        answer = self.server.replay.answer(
            self.path, self.headers.get("x-apikey"), self.headers.get("x-tool")
        )
        try:
            self.send_response(answer.status, HTTPStatus(answer.status).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped waiting (an injected timeout): nothing left to tell it.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _observable(query: str) -> tuple[str, str]:
    """The collection and identifier of an observable the widget endpoint is asked about."""
    if _HEX_ID.match(query):
        return "files", query
    try:
        ipaddress.ip_address(query)
    except ValueError:
        pass
    else:
        return "ip_addresses", query
    if "://" in query:
        return "urls", url_id(query)
    return "domains", query


def _without_gti_assessment(body: bytes) -> bytes:
    """The recorded answer as Google Threat Intelligence gives it to a request without `x-tool`."""
    if b'"gti_assessment"' not in body:
        return body
    document = json.loads(body)
    attributes = document["data"].get("attributes")
    if isinstance(attributes, dict):
        attributes.pop("gti_assessment", None)
    return json.dumps(document).encode()


def _require_loopback(host: str) -> None:
    """Refuse any address but loopback: the replay server is for this machine only."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the replay server listens on loopback only, not on {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"the replay server listens on loopback only, not on {host}")


def checked_faults(faults: dict[str, float]) -> dict[str, float]:
    """The fault probabilities, checked: known faults, each in [0, 1], adding up to at most 1."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown faults {unknown}: use {', '.join(FAULTS)}")
    if any(not 0.0 <= probability <= 1.0 for probability in faults.values()):
        raise ValueError("each fault probability must be between 0 and 1")
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError("the fault probabilities must add up to at most 1")
    return dict(faults)
