"""The Dots payout-link API, behind one keep-alive `httpx.Client` per container.

Every attempt carries the same derived idempotency key, so the upstream deduplicates and retrying a lost or
failed attempt cannot create a second link. Attempts are bounded by count and by the caller's deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from payout_links.credentials import CredentialsStore
from payout_links.normalize import UnreadableAnswer, normalize_payout_link
from payout_links.observability import MetricUnit, logger, metrics
from payout_links.problems import (
    Problem,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimedOut,
)

# An attempt with less time than this left cannot get an answer back; fail instead of starting it.
MIN_ATTEMPT_SECONDS = 0.5
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0
MAX_RETRY_AFTER_SECONDS = 3600
_TIMED_OUT = "The payout provider did not answer in time; retry with the same key."
# Possibly created: the caller's retry reaches the upstream with the same key and reads the link then.
_UNREADABLE = "The payout provider's answer could not be read; retry with the same key."


class PayoutApiClient:
    def __init__(
        self,
        http: httpx.Client,
        url: str,
        credentials: CredentialsStore,
        *,
        attempt_timeout: float,
        max_attempts: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._url = url
        self._credentials = credentials
        self._attempt_timeout = attempt_timeout
        self._max_attempts = max_attempts
        self._clock = clock
        self._sleep = sleep

    def create_payout_link(self, payload: dict[str, Any], *, deadline: float) -> dict[str, Any]:
        """POST the payload; return the normalized link or raise a `Problem` that says what went wrong."""
        credentials_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            time_left = deadline - self._clock()
            if time_left < MIN_ATTEMPT_SECONDS:
                raise UpstreamTimedOut(_TIMED_OUT)
            try:
                return self._attempt(payload, timeout=min(self._attempt_timeout, time_left))
            except _CredentialsRejected:
                if credentials_refreshed:
                    raise UpstreamFailed("The payout provider rejected the proxy's credentials.") from None
                credentials_refreshed = True
                self._credentials.refresh()
                metrics.add_metric(name="CredentialsRefreshed", unit=MetricUnit.Count, value=1)
                attempt -= 1  # a rotation retry is not a failure of the upstream
            except _Retryable as retryable:
                if attempt >= self._max_attempts or not self._backoff(attempt, deadline):
                    raise retryable.problem from None

    def _attempt(self, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        headers = {"Authorization": self._credentials.get().authorization}
        started = self._clock()
        try:
            response = self._http.post(self._url, json=payload, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            self._report(started, "Timeout")
            raise _Retryable(UpstreamTimedOut(_TIMED_OUT)) from None
        except httpx.DecodingError:
            self._report(started, "Unreadable")
            raise UpstreamFailed(_UNREADABLE) from None
        except httpx.TransportError as exc:
            self._report(started, "Connection", error=type(exc).__name__)
            raise _Retryable(
                UpstreamFailed("The payout provider could not be reached; retry with the same key.")
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                link = normalize_payout_link(response.json())
            except (ValueError, UnreadableAnswer):
                self._report(started, "Unreadable", status=status)
                raise UpstreamFailed(_UNREADABLE) from None
            self._report(started, "2xx", status=status)
            return link
        self._report(started, f"{status // 100}xx", status=status)
        if status == 401:
            raise _CredentialsRejected
        if status == 429:
            raise UpstreamRateLimited(
                "The payout provider is rate limiting requests; retry after the indicated delay.",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise _Retryable(
                UpstreamFailed(f"The payout provider failed with status {status}; retry with the same key.")
            )
        if status in (400, 422):
            raise UpstreamRejected("The payout provider rejected the request; check the payee and amount.")
        raise UpstreamFailed(f"The payout provider answered with unexpected status {status}.")

    def _backoff(self, attempt: int, deadline: float) -> bool:
        """Sleep a jittered, exponentially growing delay; False when no further attempt fits before the deadline."""
        delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
        if self._clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
            return False
        self._sleep(delay)
        return True

    def _report(self, started: float, outcome: str, *, status: int | None = None, error: str | None = None) -> None:
        """One latency sample per attempt, and one `UpstreamError<class>` count per failed attempt
        (4xx, 5xx, Timeout, Connection, Unreadable: an answer that cannot be read, 2xx included)."""
        elapsed_ms = (self._clock() - started) * 1000
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
        if outcome != "2xx":
            metrics.add_metric(name=f"UpstreamError{outcome}", unit=MetricUnit.Count, value=1)
        # A failed attempt is worth a warning; a successful one shows in the request's "payout link created"
        # line and in UpstreamLatency.
        log = logger.debug if outcome == "2xx" else logger.warning
        log(
            "upstream attempt",
            extra={
                "upstream_outcome": outcome,
                "upstream_status": status,
                "upstream_error": error,
                "upstream_ms": round(elapsed_ms, 1),
            },
        )


class _Retryable(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


class _CredentialsRejected(Exception):
    pass


def _retry_after_seconds(header: str | None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), bounded; None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():
        seconds = int(header)
    else:
        try:
            seconds = int(parsedate_to_datetime(header).timestamp() - time.time() + 0.999)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(1, min(seconds, MAX_RETRY_AFTER_SECONDS))
