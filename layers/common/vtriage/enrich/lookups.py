"""The IOC lookups of one batch: the enrichment cache first, then VirusTotal within the shared quota and
the invocation's time, each IOC looked up at most once a batch and cached as soon as it arrives."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeGuard

from aws_lambda_powertools import Logger

from vtriage.clock import next_minute, next_utc_midnight
from vtriage.enrich.outcomes import DEFERRALS, Deferral, LastDelivery, PutOffError, failure_reason, later
from vtriage.errors import ConfigurationError, QuotaExhaustedError, TransientError
from vtriage.models import Enrichment, Ioc, IocOutcome
from vtriage.verdict import VerdictPolicy, assess_ioc
from vtriage.virustotal.errors import (
    VirusTotalError,
    VirusTotalQuotaExceededError,
    VirusTotalTooManyRequestsError,
)

if TYPE_CHECKING:
    # The ports only type this step's collaborators: the enrich function's cold start need not load them.
    from vtriage.ports import EnrichmentCache, QuotaLimiter, ThreatIntel

logger = Logger(child=True)

# VirusTotal refusing the API key (401, 403) waits for a person: records are put off this long at a time.
KEY_REFUSED_RETRY = timedelta(minutes=5)
# Time kept at the end of an invocation to store cases, start executions and defer records: no lookup
# runs into it (the VirusTotal client cuts its retries to fit), and none starts with less than
# MIN_LOOKUP_SECONDS before it.
FINISH_RESERVE_SECONDS = 10.0
MIN_LOOKUP_SECONDS = 5.0


def quota_refusal(error: VirusTotalError, now: datetime) -> QuotaExhaustedError:
    """A 429 VirusTotal still answered after the client's retries, as a deferral: until the next minute,
    or the next 00:00 UTC when VirusTotal's message names the daily quota."""
    if "daily" in error.message.lower() or "day" in error.message.lower().split():
        return QuotaExhaustedError(f"VirusTotal refused: {error}", next_utc_midnight(now), window="day")
    return QuotaExhaustedError(f"VirusTotal refused: {error}", next_minute(now), window="minute")


def refused_by_virustotal(error: Exception) -> bool:
    """VirusTotal answered that it will not look this IOC up (a 4xx other than the key's and the quota's):
    that IOC's fate, not the alert's."""
    return (
        isinstance(error, VirusTotalError)
        and not isinstance(error, TransientError | ConfigurationError)
        and error.http_status is not None
        and 400 <= error.http_status < 500
    )


def virustotal_unavailable(error: Exception) -> TypeGuard[VirusTotalError]:
    """VirusTotal failing for a reason a later try may cure: a 5xx, no answer in time, no connection. Not
    its 429s, which defer the record until the quota reopens, nor its 401 and 403, which defer it until
    the key is fixed."""
    return (
        isinstance(error, VirusTotalError)
        and isinstance(error, TransientError)
        and not isinstance(error, VirusTotalQuotaExceededError | VirusTotalTooManyRequestsError)
    )


def unavailability(error: VirusTotalError) -> str:
    """How VirusTotal failed, in a few words: `HTTP 500, 4 attempts`, `Timeout, 4 attempts`."""
    what = f"HTTP {error.http_status}" if error.http_status is not None else error.code
    return f"{what}, {error.attempts} attempt{'' if error.attempts == 1 else 's'}"


def unavailable(ioc: Ioc, error: VirusTotalError, last: LastDelivery) -> IocOutcome:
    """An IOC VirusTotal could not answer for up to its record's last delivery: triaged without its
    enrichment, with no verdict of its own (`unknown`, never `harmless`), and why. Nothing is cached."""
    return IocOutcome(
        type=ioc.type,
        value=ioc.value,
        found_at=ioc.found_at,
        reasons=[
            f"not enriched: VirusTotal unavailable ({unavailability(error)}) on the last of "
            f"{last.max_receives} deliveries",
            f"last error: {failure_reason(error)}",
        ],
        virustotal_unavailable=True,
    )


def pending(ioc: Ioc, refusal: Deferral) -> IocOutcome:
    """An IOC not looked up yet because its lookup was put off: no verdict of its own, and why."""
    return IocOutcome(
        type=ioc.type,
        value=ioc.value,
        found_at=ioc.found_at,
        reasons=[f"pending: not looked up yet, {refusal} (until {refusal.retry_at.isoformat()})"],
    )


def _not_enriched(ioc: Ioc, error: Exception) -> IocOutcome:
    """An IOC VirusTotal would not look up: no verdict of its own, and why."""
    reason = f"not enriched: {error}"  # VirusTotal's code and message, cut by the client
    return IocOutcome(type=ioc.type, value=ioc.value, found_at=ioc.found_at, reasons=[reason])


class Deadline:
    """The end of the invocation, on the monotonic clock: none until `limit` is told the time left."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._end: float | None = None

    def limit(self, remaining_seconds: float) -> None:
        """The invocation ends `remaining_seconds` from now."""
        self._end = self._monotonic() + remaining_seconds

    def time_left(self) -> float:
        """Seconds until the invocation ends (infinite without a limit)."""
        return math.inf if self._end is None else self._end - self._monotonic()

    def lookups_end(self) -> float | None:
        """When lookups must be over, on the monotonic clock: FINISH_RESERVE_SECONDS before the end."""
        return None if self._end is None else self._end - FINISH_RESERVE_SECONDS

    def has_time_for_a_lookup(self) -> bool:
        """Whether a lookup begun now has MIN_LOOKUP_SECONDS before lookups must be over."""
        lookups_end = self.lookups_end()
        return lookups_end is None or self._monotonic() + MIN_LOOKUP_SECONDS <= lookups_end


class Lookups:
    """The enrichments of one batch's IOCs.

    `prefetch` looks up, concurrently (at most `max_concurrency` at a time), every IOC the batch will
    need: one cache read for all, then each miss from VirusTotal, taking its units of the shared quota
    (`limiter`) first (the whole batch's at once when they fit), and cached as soon as it arrives.
    `assess` gives an IOC's outcome from what was found (looking it up then if nobody asked before), or
    raises what stands in its way: a deferral (QuotaExhaustedError, PutOffError) when the quota is
    spent, the invocation runs short of time (`deadline`) or VirusTotal refuses the API key, else the
    error its lookup met. An IOC met again in the batch counts as a cache hit.

    `request_counter` gives the HTTP requests sent to VirusTotal, retries included, when the client
    counts them.
    """

    def __init__(
        self,
        intel: ThreatIntel,
        cache: EnrichmentCache,
        policy: VerdictPolicy,
        now: Callable[[], datetime],
        deadline: Deadline | None = None,
        *,
        limiter: QuotaLimiter | None = None,
        max_concurrency: int = 4,
        request_counter: Callable[[], int] | None = None,
    ) -> None:
        self.intel = intel
        self.cache = cache
        self.policy = policy
        self.now = now
        self.deadline = deadline if deadline is not None else Deadline()
        self.limiter = limiter
        self.max_concurrency = max_concurrency
        self.request_counter = request_counter
        self.looked_up = 0
        self.cache_hits = 0
        self.auth_failures = 0
        self._found: dict[str, Enrichment] = {}
        self._used: set[str] = set()
        self._failed: dict[str, Exception] = {}
        self._refusal: Deferral | None = None
        self._lock = threading.Lock()

    @property
    def vt_requests(self) -> int:
        """HTTP requests sent to VirusTotal, retries included, when the client counts them; else lookups."""
        return self.request_counter() if self.request_counter is not None else self.looked_up

    def prefetch(self, iocs: Iterable[Ioc]) -> None:
        """Look up, concurrently, those of `iocs` not found yet. Never raises: an IOC whose lookup failed
        keeps its error, which `assess` raises for the alert that needs it."""
        wanted: dict[str, Ioc] = {}
        for ioc in iocs:
            if ioc.skipped_reason is None and ioc.key not in self._found:
                wanted.setdefault(ioc.key, ioc)
        if not wanted:
            return
        try:
            self._enrich_all(list(wanted.values()))
        except Exception as error:  # only the records needing these IOCs meet it, when handled
            self._failed.update(dict.fromkeys(wanted, error))

    def assess(self, ioc: Ioc) -> IocOutcome:
        """The IOC's outcome: skipped, enriched, or not enriched when VirusTotal would not look it up.

        Raises a deferral, or the error its lookup met.
        """
        if ioc.skipped_reason is not None:
            return IocOutcome.skipped(ioc)
        enrichment = self._found.get(ioc.key)
        if enrichment is None:
            if ioc.key not in self._failed:
                self._enrich_all([ioc])
            failure = self._failed.get(ioc.key)
            if failure is not None:
                if refused_by_virustotal(failure):
                    return _not_enriched(ioc, failure)
                raise failure
            enrichment = self._found[ioc.key]
        if ioc.key in self._used:
            # Met earlier in this batch: answered without a request, as a cache hit is.
            with self._lock:
                self.cache_hits += 1
            enrichment = enrichment.model_copy(update={"cached": True})
        else:
            self._used.add(ioc.key)
        return IocOutcome.enriched(ioc, enrichment)

    def _enrich_all(self, iocs: list[Ioc]) -> None:
        """Enrich the IOCs into `_found`, or their errors into `_failed`: one cache read for all, the
        misses looked up concurrently within the quota, each cached as it arrives."""
        try:
            cached = self.cache.get_fresh(iocs)
        except Exception as error:  # only the records that need these IOCs fail, and come back
            self._failed.update(dict.fromkeys((ioc.key for ioc in iocs), error))
            return
        self._found.update(cached)
        self.cache_hits += len(cached)
        misses = [ioc for ioc in iocs if ioc.key not in cached]
        if not misses:
            return
        try:
            reserved = self._reserve(
                sum(self.intel.requests_per_lookup(ioc.type) for ioc in misses), len(misses)
            )
        except Exception as error:
            self._failed.update(dict.fromkeys((ioc.key for ioc in misses), error))
            return
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(misses))) as pool:
            futures = {ioc.key: pool.submit(self._look_up, ioc, reserved) for ioc in misses}
        for key, future in futures.items():
            failure = future.exception()
            if failure is None:
                self._found[key] = future.result()
            elif isinstance(failure, Exception):
                self._failed[key] = failure
            else:
                raise failure

    def _reserve(self, units: int, lookups: int) -> bool:
        """Take the quota of all the lookups (`units` requests) at once when it has room for them; False
        when each lookup must take its own (then as many run as the quota has room for, and the rest are
        deferred)."""
        if self.limiter is None:
            return True
        if lookups == 1:
            return False
        try:
            self.limiter.acquire(units)
        except QuotaExhaustedError:
            return False
        return True

    def _look_up(self, ioc: Ioc, reserved: bool) -> Enrichment:
        """The IOC's enrichment from VirusTotal, taking its unit of the quota unless the batch reserved
        it, cached as soon as it arrives (runs in workers)."""
        with self._lock:
            refusal = self._refusal
        if refusal is not None and refusal.retry_at > self.now():
            # The quota is spent, or the key refused, for this batch: asking again would be refused again.
            raise refusal
        if not self.deadline.has_time_for_a_lookup():
            raise PutOffError("the invocation had too little time left to look its IOCs up", self.now())
        try:
            if self.limiter is not None and not reserved:
                self.limiter.acquire(self.intel.requests_per_lookup(ioc.type))
            with self._lock:
                self.looked_up += 1
            try:
                found = self.intel.lookup(ioc, self.deadline.lookups_end())
            except (VirusTotalQuotaExceededError, VirusTotalTooManyRequestsError) as error:
                raise quota_refusal(error, self.now()) from error
            except ConfigurationError as error:
                raise self._key_refused(error) from error
            except VirusTotalError as error:
                if isinstance(error, TransientError) or refused_by_virustotal(error):
                    raise
                raise self._virustotal_unusable(error) from error
        except DEFERRALS as error:
            with self._lock:
                self._refusal = later(self._refusal, error)
            raise
        enrichment = assess_ioc(ioc, found, self.policy, self.now())
        # Cached now, not once the batch's lookups are over: an invocation cut short loses none of it.
        self._keep([enrichment])
        return enrichment

    def _key_refused(self, error: ConfigurationError) -> PutOffError:
        """VirusTotal refusing the API key (401, 403): a configuration error, logged and counted (the
        VirusTotalAuthFailures metric, which an alarm watches); the record waits for the key to be fixed."""
        with self._lock:
            self.auth_failures += 1
        retry_at = self.now() + KEY_REFUSED_RETRY
        # The client never puts the key in an error; the message is VirusTotal's, escaped and cut.
        logger.error(
            "VirusTotal refused the API key: a configuration error; records are deferred until it is fixed",
            extra={
                "error_type": type(error).__name__,
                "error": failure_reason(error),
                "until": retry_at.isoformat(),
            },
        )
        return PutOffError(f"VirusTotal refused the API key ({failure_reason(error)})", retry_at)

    def _virustotal_unusable(self, error: VirusTotalError) -> PutOffError:
        """VirusTotal (or what stands at VT_BASE_URL) cannot be asked at all: no request could be sent, a
        redirect, an answer that is not VirusTotal's. A setting to fix: logged, and the record waits."""
        retry_at = self.now() + KEY_REFUSED_RETRY
        logger.error(
            "VirusTotal could not be asked: check VT_BASE_URL and the network path; records are deferred",
            extra={"error_type": type(error).__name__, "error": str(error), "until": retry_at.isoformat()},
        )
        return PutOffError(f"VirusTotal could not be asked ({error})", retry_at)

    def _keep(self, enrichments: list[Enrichment]) -> None:
        """Cache what was looked up. A write that fails costs a lookup later, never a record: the
        enrichments are in hand and go into the cases regardless."""
        try:
            self.cache.put(enrichments)
        except Exception as error:
            logger.warning(
                "enrichments not cached",
                extra={"iocs": [enrichment.key for enrichment in enrichments], "error": str(error)},
            )
