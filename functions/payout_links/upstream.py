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
from urllib.parse import quote

import httpx

from payout_links import bounded_transport
from payout_links.credentials import CredentialsStore
from payout_links.normalize import echoed_user_id, mismatches, normalize_payout_link
from payout_links.observability import MetricUnit, loggable, logger, metrics, request_id
from payout_links.outcomes import CreateFailed, Outcome, answer_outcome, combined, transport_outcome
from payout_links.problems import (
    LinkLostUpstream,
    NotCancelable,
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
# What a failed create tells the caller: its retry reaches the upstream with the same key and gets the link
# that may already exist. Reads and cancels are safe to repeat as they are.
_RETRY_SAME_KEY = "retry with the same key"
_RETRY = "retry"
# The header that carries the id of the request being served (`observability.request_id`: the `correlation_id` of
# every log line about it) on each call to the upstream, for the upstream's own logs and support; every attempt of a
# request carries the same one. The upstream deduplicates by the create's `idempotency_key`, not by this.
REQUEST_ID_HEADER = "X-Request-Id"
# A link in one of these states can no longer be canceled: it was paid out, reversed, or it lapsed.
NOT_CANCELABLE_STATUSES = frozenset({"claimed", "reversed", "expired"})


def _timed_out(retry: str) -> UpstreamTimedOut:
    return UpstreamTimedOut(f"The payout provider did not answer in time; {retry}.")


def _unreadable(retry: str) -> UpstreamFailed:
    return UpstreamFailed(f"The payout provider's answer could not be read; {retry}.")


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

    @property
    def http(self) -> httpx.Client:
        return self._http

    @property
    def credentials(self) -> CredentialsStore:
        return self._credentials

    @property
    def attempt_timeout(self) -> float:
        return self._attempt_timeout

    def create_payout_link(self, payload: dict[str, Any], *, deadline: float) -> dict[str, Any]:
        """POST the payload; return the normalized link once it is checked against the payload. Otherwise raise
        `CreateFailed`: the problem to answer, and whether any attempt may have made the link."""
        outcomes: list[Outcome] = []
        try:
            return self._create_with_retries(payload, deadline, outcomes)
        except _AttemptFailed as failed:
            raise CreateFailed(failed.problem, combined(outcomes), mismatched_link_id=failed.link_id) from None
        except Problem as problem:
            raise CreateFailed(problem, combined(outcomes)) from None

    def _create_with_retries(self, payload: dict[str, Any], deadline: float, outcomes: list[Outcome]) -> dict[str, Any]:
        credentials_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            # The credentials first: reading them (on a cold start, or after a 401 or 403) takes from the same deadline.
            authorization = self._credentials.get(deadline=deadline).authorization
            time_left = deadline - self._clock()
            if time_left < MIN_ATTEMPT_SECONDS:
                raise _timed_out(_RETRY_SAME_KEY)
            try:
                return self._attempt(payload, authorization, seconds=min(self._attempt_timeout, time_left))
            except _AttemptFailed as failed:
                outcomes.append(failed.outcome)
                if isinstance(failed, _CredentialsRejected) and not credentials_refreshed:
                    credentials_refreshed = True
                    self._refresh_credentials(deadline)
                    attempt -= 1  # a rotation retry is not a failure of the upstream
                elif not (failed.retryable and attempt < self._max_attempts and self._backoff(attempt, deadline)):
                    raise

    def _attempt(self, payload: dict[str, Any], authorization: str, *, seconds: float) -> dict[str, Any]:
        """One POST that ends within `seconds`, wall clock, however slowly the upstream answers."""
        started = self._clock()
        response = self._exchange("POST", self._url, authorization, seconds=seconds, payload=payload)
        status = response.status_code
        if 200 <= status < 300:
            link, user_id = self._read_link(response, started)
            self._report(started, "2xx", status=status)
            if wrong := mismatches(payload, link, echoed_user_id=user_id):
                logger.error(
                    "upstream link does not match the request",
                    extra={"mismatched_fields": wrong, "link_id": loggable(link["id"])},
                )
                problem = UpstreamMismatch("The payout provider answered with a link that does not match the request.")
                raise _AttemptFailed(problem, Outcome.UNKNOWN, link_id=link["id"])
            return link
        self._report(started, f"{status // 100}xx", status=status)
        raise self._refusal(response)

    def _exchange(
        self,
        method: str,
        url: str,
        authorization: str,
        *,
        seconds: float,
        payload: dict[str, Any] | None = None,
        retry: str = _RETRY_SAME_KEY,
    ) -> httpx.Response:
        """One request whose answer is fully read within `seconds`, wall clock; `_AttemptFailed` when none came
        back. `retry` ends the problem's detail: what the caller should do next."""
        started = self._clock()
        headers = {"Authorization": authorization}
        if correlation := request_id():
            headers[REQUEST_ID_HEADER] = correlation
        try:
            with bounded_transport.within(seconds):
                return self._http.request(method, url, json=payload, headers=headers, timeout=seconds)
        except httpx.TimeoutException as exc:
            self._report(started, "Timeout")
            problem: Problem = _timed_out(retry)
            raise _AttemptFailed(problem, transport_outcome(exc), retryable=True) from None
        except httpx.TransportError as exc:
            self._report(started, "Connection", error=type(exc).__name__)
            problem = UpstreamFailed(f"The payout provider could not be reached; {retry}.")
            raise _AttemptFailed(problem, transport_outcome(exc), retryable=True) from None
        except httpx.DecodingError:
            self._report(started, "Unreadable")
            problem = _unreadable(retry)
            raise _AttemptFailed(problem, Outcome.UNKNOWN) from None

    # -- the lifecycle of a link: read it, cancel it -------------------------------------------------------------

    def retrieve_payout_link(self, link_id: str, *, deadline: float, recorded: bool = True) -> dict[str, Any]:
        """GET the link, fresh, normalized. One request (two when the credentials were rotated). `recorded`: the
        link is one the proxy recorded for its caller (False for a mismatched link it cancels)."""
        response, started = self._lifecycle_request("GET", link_id, deadline)
        if not response.is_success:
            raise self._lifecycle_refusal(response, started, link_id, recorded=recorded)
        link = self._lifecycle_link(response, link_id)
        if link is None:
            self._report(started, "Unreadable", status=response.status_code)
            raise _unreadable(_RETRY)
        self._report(started, "2xx", status=response.status_code)
        return link

    def cancel_payout_link(self, link_id: str, *, deadline: float, recorded: bool = True) -> dict[str, Any]:
        """DELETE the link and return it, `canceled`. A refusal is judged by the link's state, read once more,
        never by the refusal's text (the upstream does not document it): already canceled is a success, claimed,
        reversed or expired is `NotCancelable`, anything else the upstream's failure. `recorded`: the link is one
        the proxy recorded for its caller (False for a mismatched link, which no one was handed)."""
        response, started = self._lifecycle_request("DELETE", link_id, deadline)
        if response.is_success:
            self._report(started, "2xx", status=response.status_code)
            # A 2xx may carry no readable link (a 204, an empty or a bare `{"success": true}` body): the cancel
            # happened, and the link's state, read once more, says what it is now.
            link = self._lifecycle_link(response, link_id) or self.retrieve_payout_link(
                link_id, deadline=deadline, recorded=recorded
            )
        elif 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404, 429):
            # Expected when the link is canceled already or past canceling: not counted as an upstream error.
            self._report(started, "Refusal", status=response.status_code)
            link = self.retrieve_payout_link(link_id, deadline=deadline, recorded=recorded)
        else:
            raise self._lifecycle_refusal(response, started, link_id, recorded=recorded)
        if link["status"] == "canceled":
            return link
        if link["status"] in NOT_CANCELABLE_STATUSES:
            raise NotCancelable(f"The payout link is {link['status']} and can no longer be canceled.")
        logger.error("upstream did not cancel a cancelable link", extra={"link_status": link["status"]})
        failed = UpstreamFailed("The payout provider did not cancel the link; retry.")
        failed.logged_at_source = True  # just above: the answer's own line is a WARNING
        raise failed

    def _lifecycle_request(self, method: str, link_id: str, deadline: float) -> tuple[httpx.Response, float]:
        """The answer to one request about `link_id` (and when it started), retried once with the credentials
        read again after a 401 or 403. Failures answer at once: reads and cancels are safe for the caller to repeat."""
        url = f"{self._url}/{quote(link_id, safe='')}"
        credentials_refreshed = False
        while True:
            authorization = self._credentials.get(deadline=deadline).authorization
            time_left = deadline - self._clock()
            if time_left < MIN_ATTEMPT_SECONDS:
                raise _timed_out(_RETRY)
            started = self._clock()
            try:
                response = self._exchange(
                    method, url, authorization, seconds=min(self._attempt_timeout, time_left), retry=_RETRY
                )
            except _AttemptFailed as failed:
                raise failed.problem from None
            if response.status_code not in CREDENTIALS_REJECTED_STATUSES or credentials_refreshed:
                return response, started
            self._report(started, "4xx", status=response.status_code)
            credentials_refreshed = True
            self._refresh_credentials(deadline)

    @staticmethod
    def _lifecycle_link(response: httpx.Response, link_id: str) -> dict[str, Any] | None:
        """The normalized link a 2xx carries, None when it carries none that can be read (whatever it is: never a
        500); `UpstreamMismatch` when it is about another link."""
        try:
            link = normalize_payout_link(response.json())
        except Exception:
            return None
        if link["id"] != link_id:
            logger.error("upstream answered about another link", extra={"mismatched_fields": ["id"]})
            raise UpstreamMismatch("The payout provider answered about another payout link.")
        return link

    def _lifecycle_refusal(self, response: httpx.Response, started: float, link_id: str, *, recorded: bool) -> Problem:
        status = response.status_code
        self._report(started, f"{status // 100}xx", status=status)
        if status == 404:
            if not recorded:
                # A mismatched link being canceled: its mismatch was the ERROR; the cancel is tried again later.
                logger.warning("upstream does not know a mismatched link", extra={"link_id": loggable(link_id)})
                return LinkLostUpstream()
            # We recorded this link as created: the upstream losing it (or a base URL pointing at another of its
            # environments) is worth a look; the caller sees the same 404 as for any link it cannot see.
            logger.error("upstream does not know a recorded link", extra={"link_id": loggable(link_id)})
            return LinkLostUpstream()
        if status == 429:
            return UpstreamRateLimited(
                "The payout provider is rate limiting requests; retry after the indicated delay.",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in CREDENTIALS_REJECTED_STATUSES:
            return UpstreamFailed("The payout provider rejected the proxy's credentials.")
        if status >= 500:
            return UpstreamFailed(f"The payout provider failed with status {status}; {_RETRY}.")
        return UpstreamFailed(f"The payout provider answered with unexpected status {status}.")

    def _read_link(self, response: httpx.Response, started: float) -> tuple[dict[str, Any], str | None]:
        """The normalized link, and the user the upstream says it is for."""
        try:
            answer = response.json()
            return normalize_payout_link(answer), echoed_user_id(answer)
        except Exception:  # whatever a 2xx carries (RecursionError included), unreadable is UNKNOWN, never a 500
            self._report(started, "Unreadable", status=response.status_code)
            raise _AttemptFailed(_unreadable(_RETRY_SAME_KEY), Outcome.UNKNOWN) from None

    @staticmethod
    def _refusal(response: httpx.Response) -> _AttemptFailed:
        """What a non-2xx answer means for the caller, and for the link."""
        status = response.status_code
        outcome = answer_outcome(status)
        if status in CREDENTIALS_REJECTED_STATUSES:
            problem: Problem = UpstreamFailed("The payout provider rejected the proxy's credentials.")
            return _CredentialsRejected(problem, outcome)
        if status == 429:
            problem = UpstreamRateLimited(
                "The payout provider is rate limiting requests; retry after the indicated delay.",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
            return _AttemptFailed(problem, outcome)
        if status >= 500:
            # Dots' own Retry-After, if it sent one, is what the caller is told when the key stays bound.
            problem = UpstreamFailed(
                f"The payout provider failed with status {status}; retry with the same key.",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
            return _AttemptFailed(problem, outcome, retryable=True)
        if status in (400, 422):
            problem = UpstreamRejected("The payout provider rejected the request; check the payee and amount.")
            return _AttemptFailed(problem, outcome)
        return _AttemptFailed(UpstreamFailed(f"The payout provider answered with unexpected status {status}."), outcome)

    def _refresh_credentials(self, deadline: float) -> None:
        """Read the credentials again after a 401 or 403 (they may have been rotated): once per request, counted."""
        self._credentials.refresh(deadline=deadline)
        metrics.add_metric(name="CredentialsRefreshed", unit=MetricUnit.Count, value=1)

    def _backoff(self, attempt: int, deadline: float) -> bool:
        """Sleep a jittered, exponentially growing delay; False when no further attempt fits before the deadline."""
        delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
        if self._clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
            return False
        self._sleep(delay)
        return True

    def _report(self, started: float, outcome: str, *, status: int | None = None, error: str | None = None) -> None:
        """One latency sample per attempt, and one `UpstreamError<class>` count per failed attempt (`error_metric`:
        a 4xx by what it means, 5xx, Timeout, Connection, Unreadable: an answer that cannot be read, 2xx included)."""
        elapsed_ms = (self._clock() - started) * 1000
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
        if outcome not in ("2xx", "Refusal"):
            metrics.add_metric(name=error_metric(outcome, status), unit=MetricUnit.Count, value=1)
        # A failed attempt is worth a warning; a successful one shows in the request's "payout link created"
        # line and in UpstreamLatency; a refusal of the request itself (400, 422: a payee the upstream will not pay,
        # a link past canceling) is the caller's to fix, not a failure: INFO.
        if outcome == "2xx":
            log = logger.debug
        elif outcome == "Refusal" or status in (400, 422):
            log = logger.info
        else:
            log = logger.warning
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

    def __init__(
        self, problem: Problem, outcome: Outcome, *, retryable: bool = False, link_id: str | None = None
    ) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.outcome = outcome
        self.retryable = retryable
        self.link_id = link_id  # the link of a 2xx that does not match the request


class _CredentialsRejected(_AttemptFailed):
    """A 401 or 403: worth one more attempt with the secret read again (it may have been rotated)."""


# A failed attempt's 4xx, counted by what it means (the alarms page on the first two).
CREDENTIALS_REJECTED_STATUSES = frozenset({401, 403})
RATE_LIMITED_STATUS = 429


def error_metric(outcome: str, status: int | None) -> str:
    """The count a failed attempt adds to: `UpstreamError<outcome>`, but a 4xx by what it means, so that a rate limit
    or rejected credentials are not lost among refused requests: `UpstreamErrorCredentialsRejected` (401, 403),
    `UpstreamErrorRateLimited` (429), `UpstreamErrorRequestRefused` (any other 4xx)."""
    if outcome != "4xx":
        return f"UpstreamError{outcome}"
    if status in CREDENTIALS_REJECTED_STATUSES:
        return "UpstreamErrorCredentialsRejected"
    if status == RATE_LIMITED_STATUS:
        return "UpstreamErrorRateLimited"
    return "UpstreamErrorRequestRefused"


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
