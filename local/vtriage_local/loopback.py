"""botocore's requests to the local AWS answered in this process, without a socket: each request goes to
moto's WSGI application itself, as moto's server would hand it over, in the caller's thread.

Over loopback HTTP, every request of a 100-alert `vtriage run` (about 3,000) paid for a connection, the
HTTP exchange on both sides and a server thread: a sixth of the run's CPU. moto's server still runs for
whatever speaks HTTP to it (a browser, `requests`, a client made before moto was imported); botocore
clients made after it reach moto through the hook moto adds to every botocore session, which this
patch extends to the local AWS's endpoint. The answer is the same: the same application picks the
service and its route, and the same view answers (tests/functional/test_loopback.py compares them); only
Flask's request context around the view is left out for AWS's services.
"""

from __future__ import annotations

import io
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError
from flask import Response
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.core.request import Request
from moto.moto_api import recorder
from werkzeug.exceptions import HTTPException
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Response as BaseResponse

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


class _ServedRequest(Request):
    """A request as moto's server hands it to a service (its BackendRequest, without Flask's context)."""

    from_wsgi_server = True


def _answer(app: Any, request: AWSPreparedRequest) -> AWSResponse:
    """The application's answer to the request, as botocore reads one off the wire."""
    environ = _environ(request, _body(request))
    service_app = app.get_application(environ)
    if getattr(service_app, "service", None) in _THROUGH_FLASK:
        status, headers, payload = _through_flask(service_app, environ)
    else:
        status, headers, payload = _served(service_app, environ)
    if request.method == "HEAD":
        # An answer to HEAD carries no body on the wire, so botocore names an error by its status alone
        # ("404", not S3's "NoSuchBucket"), as it does against AWS and moto's HTTP server.
        payload = b""
    answered = HTTPHeaders()
    for name, value in headers.items():
        answered[name] = value
    return AWSResponse(request.url, status, answered, MockRawResponse(payload))


# moto's own API reads Flask's request context; every AWS service takes its request as an argument.
_THROUGH_FLASK = frozenset({"moto_api"})


def _through_flask(service_app: Any, environ: dict[str, Any]) -> tuple[int, Any, bytes]:
    app_iter, status, headers = run_wsgi_app(service_app, environ, buffered=True)
    try:
        payload = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return int(status.split(" ", 1)[0]), headers, payload


def _served(service_app: Any, environ: dict[str, Any]) -> tuple[int, Any, bytes]:
    """What the service's view answers, as moto's server calls it (convert_to_flask_response) but without
    Flask around it: the route matched by the app's own URL map, the view's callback given the request,
    a refusal answered as Flask answers an HTTP exception. Flask's request context, signals and hooks
    were a third of every in-process request's cost, and no AWS service of moto reads them."""
    try:
        endpoint, _arguments = service_app.url_map.bind_to_environ(environ).match()
        view = service_app.view_functions[endpoint]
        request = _ServedRequest(environ)
        recorder._record_request(request)
        try:
            result = view.callback(request, request.raw_url, dict(request.headers))
        except ClientError as error:
            result = 400, {}, error.response["Error"]["Message"]
        status, headers, content = result if len(result) == 3 else (200, {}, result)
        response: BaseResponse = Response(response=content, status=status, headers=headers)
        if request.method == "HEAD" and "content-length" in headers:
            response.headers["Content-Length"] = headers["content-length"]
    except HTTPException as refusal:
        response = refusal.get_response(environ)
    return response.status_code, response.headers, response.get_data()
