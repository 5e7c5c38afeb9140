"""The composition roots: each function's module builds its adapters from its settings, once per
container, importing only the adapters that function uses (what a function imports, its cold start
pays for). This package is the only place that creates AWS clients: built when the function first
runs, never at import, and reused across invocations of a warm container.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import boto3
from botocore.config import Config

from vtriage.adapters.dynamodb import DynamoCaseRepository
from vtriage.clock import utc_now
from vtriage.config import Settings
from vtriage.config.virustotal import VirusTotalKeySettings
from vtriage.errors import ConfigurationError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

_P = ParamSpec("_P")
_T = TypeVar("_T")


class built_once(Generic[_P, _T]):  # noqa: N801 (a decorator, named as functools.cache is)
    """`functools.cache` for what a container builds once (a composition root, a session): one build for
    each arguments even when several threads ask at once, the others waiting for it. Lambda runs one
    invocation at a time; the local runner invokes a function from several executions' threads, where
    `cache` let each of the first ones build its own (ten remediate compositions, about 60 ms of CPU each,
    in a 100-alert `vtriage run`)."""

    def __init__(self, build: Callable[_P, _T]) -> None:
        self._build = build
        self._built: dict[Hashable, _T] = {}
        self._lock = threading.Lock()
        functools.update_wrapper(self, build)

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        key = (args, tuple(sorted(kwargs.items())))
        try:
            return self._built[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build(*args, **kwargs)
            return self._built[key]

    def cache_clear(self) -> None:
        """Forget every build, as `functools.cache`'s does."""
        with self._lock:
            self._built.clear()


# Standard retry mode backs off on throttling; the Lambda timeout bounds the total.
AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
SECRET_MAX_AGE_SECONDS = 300


@built_once
def aws_session(region: str) -> boto3.session.Session:
    """The container's boto3 session for a region."""
    # One session per container: each session loads botocore's service models afresh, which costs
    # a cold start ~50 ms per client when every client has a session of its own.
    return boto3.session.Session(region_name=region)


def aws_client(settings: Settings, service: str) -> Any:
    """A client of the service, with the retry policy and timeouts every adapter relies on."""
    return aws_session(settings.region).client(
        service,  # type: ignore[call-overload]
        config=AWS_CONFIG,
        endpoint_url=settings.aws_endpoint_url,
    )


def secrets_provider(settings: Settings) -> Callable[[], SecretsProvider]:
    """A Secrets Manager provider built when a secret is first read, not when the container starts."""

    @cache
    def provider() -> SecretsProvider:
        # Imported with the first secret read, like the client: the parameters utility costs ~3 ms,
        # which the container's start then does not wait for.
        from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

        return SecretsProvider(boto3_client=aws_client(settings, "secretsmanager"))

    return provider


def secret_object(settings: Settings, name: str, needed: tuple[str, ...]) -> dict[str, Any]:
    """The secret `name` as a JSON object holding at least the keys `needed`; a ConfigurationError that
    names the secret and the keys, never a value, otherwise."""
    from aws_lambda_powertools.utilities.parameters.exceptions import (  # noqa: PLC0415
        TransformParameterError,
    )

    try:
        secret = secrets_provider(settings)().get(name, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    except TransformParameterError:
        # Its message may quote the value: say only what is wrong.
        raise ConfigurationError(f"the secret {name} must hold a JSON object") from None
    if not isinstance(secret, dict):
        raise ConfigurationError(f"the secret {name} must hold a JSON object")
    missing = [key for key in needed if not isinstance(secret.get(key), str) or not secret[key].strip()]
    if missing:
        raise ConfigurationError(f"the secret {name} lacks the key(s) {', '.join(missing)}")
    return {str(key): value for key, value in secret.items()}


def virustotal_api_key(settings: VirusTotalKeySettings, secrets: Callable[[], SecretsProvider]) -> str:
    """The VirusTotal API key: VT_API_KEY when given (local runs), else the secret's value, cached for a
    few minutes so that a rotated key is picked up without a redeploy. ConfigurationError when the
    secret holds none."""
    if settings.vt_api_key is not None:
        return settings.vt_api_key.get_secret_value()
    if settings.vt_api_key_secret is None:
        raise ConfigurationError("set VT_API_KEY_SECRET_NAME (Secrets Manager) or VT_API_KEY (local runs)")
    # A key pasted with its line end would make VirusTotal refuse every request.
    key = str(secrets().get(settings.vt_api_key_secret, max_age=SECRET_MAX_AGE_SECONDS)).strip()
    if not key:
        raise ConfigurationError(f"the secret {settings.vt_api_key_secret} holds no VirusTotal API key")
    return key


class OnFirstUse:
    """A client created the first time it is called: for services a warm container may never need
    (the dead-letter queue, deferrals, Secrets Manager once the key is cached), kept off the cold start."""

    def __init__(self, settings: Settings, service: str) -> None:
        self._settings = settings
        self._service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = aws_client(self._settings, self._service)
        return getattr(self._client, name)


def case_repository(settings: Settings) -> DynamoCaseRepository:
    """The cases table, which every function reads or writes."""
    return DynamoCaseRepository(
        aws_client(settings, "dynamodb"),
        settings.cases_table,
        timedelta(days=settings.retention_days),
        utc_now,
    )
