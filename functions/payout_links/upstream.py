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

from payout_links import deadlines
from payout_links.credentials import CredentialsStore
from payout_links.normalize import echoed_user_id, mismatches, normalize_payout_link
from payout_links.observability import MetricUnit, logger, metrics
from payout_links.outcomes import CreateFailed, Outcome, answer_outcome, combined, transport_outcome
from payout_links.problems import (
    Problem,
    UpstreamFailed,
    UpstreamMismatch,
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
        """POST the payload; return the normalized link once it is checked against the payload. Otherwise raise
        `CreateFailed`: the problem to answer, and whether any attempt may have made the link."""
        outcomes: list[Outcome] = []
        try:
            return self._create(payload, deadline, outcomes)
        except Problem as problem:
            raise CreateFailed(problem, combined(outcomes)) from None

    def _create(self, payload: dict[str, Any], deadline: float, outcomes: list[Outcome]) -> dict[str, Any]:
        credentials_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            # The credentials first: reading them (on a cold start, or after a 401) takes from the same deadline.
            authorization = self._credentials.get(deadline=deadline).authorization
            time_left = deadline - self._clock()
            if time_left < MIN_ATTEMPT_SECONDS:
                raise UpstreamTimedOut(_TIMED_OUT)
            try:
                return self._attempt(payload, authorization, seconds=min(self._attempt_timeout, time_left))
            except _AttemptFailed as failed:
                outcomes.append(failed.outcome)
                if isinstance(failed, _CredentialsRejected) and not credentials_refreshed:
                    credentials_refreshed = True
                    self._credentials.refresh(deadline=deadline)
                    metrics.add_metric(name="CredentialsRefreshed", unit=MetricUnit.Count, value=1)
                    attempt -= 1  # a rotation retry is not a failure of the upstream
                elif not (failed.retryable and attempt < self._max_attempts and self._backoff(attempt, deadline)):
                    raise failed.problem from None

    def _attempt(self, payload: dict[str, Any], authorization: str, *, seconds: float) -> dict[str, Any]:
        """One POST that ends within `seconds`, wall clock, however slowly the upstream answers."""
        headers = {"Authorization": authorization}
        started = self._clock()
        try:
            with deadlines.within(seconds):
                response = self._http.post(self._url, json=payload, headers=headers, timeout=seconds)
        except httpx.TimeoutException as exc:
            self._report(started, "Timeout")
            raise _AttemptFailed(UpstreamTimedOut(_TIMED_OUT), transport_outcome(exc), retryable=True) from None
        except httpx.TransportError as exc:
            self._report(started, "Connection", error=type(exc).__name__)
            problem = UpstreamFailed("The payout provider could not be reached; retry with the same key.")
            raise _AttemptFailed(problem, transport_outcome(exc), retryable=True) from None
        except httpx.DecodingError:
            self._report(started, "Unreadable")
            raise _AttemptFailed(UpstreamFailed(_UNREADABLE), Outcome.UNKNOWN) from None
        status = response.status_code
        if 200 <= status < 300:
            link, user_id = self._read_link(response, started)
            self._report(started, "2xx", status=status)
            if wrong := mismatches(payload, link, echoed_user_id=user_id):
                logger.error("upstream link does not match the request", extra={"mismatched_fields": wrong})
                problem = UpstreamMismatch("The payout provider answered with a link that does not match the request.")
                raise _AttemptFailed(problem, Outcome.UNKNOWN)
            return link
        self._report(started, f"{status // 100}xx", status=status)
        raise self._refusal(response)

    def _read_link(self, response: httpx.Response, started: float) -> tuple[dict[str, Any], str | None]:
        """The normalized link, and the user the upstream says it is for."""
        try:
            answer = response.json()
            return normalize_payout_link(answer), echoed_user_id(answer)
        except Exception:  # whatever a 2xx carries (RecursionError included), unreadable is UNKNOWN, never a 500
            self._report(started, "Unreadable", status=response.status_code)
            raise _AttemptFailed(UpstreamFailed(_UNREADABLE), Outcome.UNKNOWN) from None

    @staticmethod
    def _refusal(response: httpx.Response) -> _AttemptFailed:
        """What a non-2xx answer means for the caller, and for the link."""
        status = response.status_code
        outcome = answer_outcome(status)
        if status == 401:
            problem: Problem = UpstreamFailed("The payout provider rejected the proxy's credentials.")
            return _CredentialsRejected(problem, outcome)
        if status == 429:
            problem = UpstreamRateLimited(
                "The payout provider is rate limiting requests; retry after the indicated delay.",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
            return _AttemptFailed(problem, outcome)
        if status >= 500:
            problem = UpstreamFailed(f"The payout provider failed with status {status}; retry with the same key.")
            return _AttemptFailed(problem, outcome, retryable=True)
        if status in (400, 422):
            problem = UpstreamRejected("The payout provider rejected the request; check the payee and amount.")
            return _AttemptFailed(problem, outcome)
        return _AttemptFailed(UpstreamFailed(f"The payout provider answered with unexpected status {status}."), outcome)

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


class _AttemptFailed(Exception):
    """One attempt that gave no link: the problem it would answer, and what it says about the link."""

    def __init__(self, problem: Problem, outcome: Outcome, *, retryable: bool = False) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.outcome = outcome
        self.retryable = retryable


class _CredentialsRejected(_AttemptFailed):
    """A 401: worth one more attempt with the secret read again (it may have been rotated)."""


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
