"""botocore's requests to the local AWS answered in this process, without a socket: each request goes to
moto's WSGI application itself, as moto's server would hand it over, in the caller's thread.

Over loopback HTTP, every request of a 100-alert `vtriage run` (about 3,000) paid for a connection, the
HTTP exchange on both sides and a server thread: a sixth of the run's CPU. moto's server still runs for
whatever speaks HTTP to it (a browser, `requests`, a client made before moto was imported); botocore
clients made after it reach moto through the hook moto adds to every botocore session, which this
patch extends to the local AWS's endpoint. The answer is the same: the same application serves both
(tests/functional/test_loopback.py compares them).
"""

from __future__ import annotations

import io
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from werkzeug.test import run_wsgi_app

__all__ = ["answered_in_process"]


def answered_in_process(endpoint_url: str, app: Any) -> Any:
    """A patch (not started) of moto's botocore hook that answers the requests sent to `endpoint_url`
    through `app`, moto's WSGI application, and leaves every other request to moto as it was. The same
    port named `localhost` is the same server: moto's Step Functions engine calls Lambda and DynamoDB
    there for every task it runs (the Lambda task's handler then ran in a server thread, behind HTTP)."""
    hook = BotocoreStubber.__call__
    served = tuple(f"{base.rstrip('/')}/" for base in (endpoint_url, *_aliases(endpoint_url)))

    def answer_or_pass(
        stubber: BotocoreStubber, event_name: str, request: AWSPreparedRequest, **kwargs: Any
    ) -> Any:
        if not request.url.startswith(served):
            return hook(stubber, event_name, request, **kwargs)
        return _answer(app, request)

    return mock.patch.object(BotocoreStubber, "__call__", answer_or_pass)


def _aliases(endpoint_url: str) -> tuple[str, ...]:
    """The endpoint's other names on this machine: a loopback address and `localhost` are one server."""
    url = urlsplit(endpoint_url)
    loopback = {"127.0.0.1", "localhost"}
    if url.hostname not in loopback or url.port is None:
        return ()
    return tuple(f"{url.scheme}://{host}:{url.port}" for host in sorted(loopback - {url.hostname}))


def _body(request: AWSPreparedRequest) -> bytes:
    body: Any = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    read = body.read()
    return read.encode("utf-8") if isinstance(read, str) else bytes(read)


def _environ(request: AWSPreparedRequest, body: bytes) -> dict[str, Any]:
    """The WSGI environment moto's server would build for the request."""
    url = urlsplit(request.url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": url.path or "/",
        "QUERY_STRING": url.query,
        "SERVER_NAME": url.hostname or "127.0.0.1",
        "SERVER_PORT": str(url.port or 80),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url.scheme or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": url.netloc,
    }
    for name, raw in request.headers.items():
        value = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


def _answer(app: Any, request: AWSPreparedRequest) -> AWSResponse:
    """The application's answer to the request, as botocore reads one off the wire."""
    app_iter, status, headers = run_wsgi_app(app, _environ(request, _body(request)), buffered=True)
    try:
        payload = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    answered = HTTPHeaders()
    for name, value in headers.items():
        answered[name] = value
    return AWSResponse(request.url, int(status.split(" ", 1)[0]), answered, MockRawResponse(payload))
