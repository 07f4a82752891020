"""What the routes do once the caller is known, and what the settler does: the payout links' service.

It creates a payout link for an intent, exactly once; reads, cancels or lists a caller's links, for that caller
only; and settles the intents whose callers never came back.

A create, from the route to the upstream and back, each step named for what it does:

1. `app.post_payout_link` (a frontend) or `app.receive_partner_event` (a partner): parse the body, settle the
   idempotency key (inbound.py), then call
2. `PayoutLinkService.create_once(caller, key, request, context=...)`: the intent (intent.py) is locked in its
   record (`IntentStore.lock`, store.py), in the same write that reserves its amount against the caller's limits
   (limits.py). A completed intent is replayed from there; another body is refused (422), a held lock is 409, a
   spent key answers its stored problem.
3. `PayoutLinkService._drive(lock, deadline)`: the intent sent to the upstream under its derived key
   (`PayoutApiClient.create_payout_link`, upstream.py), attempted until it answers or the deadline comes. Then, by
   the outcome (outcomes.py):
   - a link that matches → `IntentStore.complete`: COMPLETED and the owner recorded, in one transaction;
   - refused, or certainly never made → `IntentStore.release`: the key is free, the reservation given back;
   - a link that does not match the request → canceled at the upstream, the key spent (`IntentStore.spend`);
   - a link another caller owns → never handed out, the key spent;
   - anything else → `IntentStore.mark_unknown`: the key stays bound and the settler resends it later.
4. The settler (settler.py) runs step 3 for every intent due (`settle_due`), through the same lock, as the
   caller's own retry would.

`get_service()` and `get_partner_secrets()` are the composition root: they build the clients once per
container, on first use, so that importing the handler does no I/O and a warm request reuses every connection.
`reset()` forgets everything a container keeps between invocations.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from payout_links import api_docs, aws
from payout_links.bounded_transport import deadline_client
from payout_links.budget import ANSWER_SECONDS, MIN_FUNCTION_TIMEOUT_SECONDS, TimeBudget
from payout_links.credentials import CredentialsStore, PartnerSecrets
from payout_links.intent import Intent
from payout_links.limits import CallerLimits
from payout_links.models import CreatePayoutLinkRequest
from payout_links.observability import (
    MetricUnit,
    count_dependency_unavailable,
    loggable,
    loggable_caller,
    logger,
    metrics,
)
from payout_links.outcomes import CreateFailed, Outcome
from payout_links.owners import LinkOwners
from payout_links.problems import (
    BOUND_RETRY_AFTER_SECONDS,
    Dependency,
    DependencyUnavailable,
    NotCancelable,
    Problem,
    RequestInProgress,
    UpstreamFailed,
    UpstreamLinkConflict,
    UpstreamMismatch,
    UpstreamRateLimited,
    UpstreamTimedOut,
)
from payout_links.settings import get_settings
from payout_links.store import (
    Created,
    DueIntent,
    IntentStore,
    KeyState,
    Lock,
    LockLost,
    OwnedByAnother,
    StoreUnavailable,
)
from payout_links.upstream import PayoutApiClient

# A read or a cancel writes nothing after the upstream answers: it keeps back only the time to answer.
LIFECYCLE_RESERVE_SECONDS = ANSWER_SECONDS
# The settler backs off an intent that stays unknown: SETTLE_AFTER_SECONDS, doubled per resend, at most this.
SETTLE_BACKOFF_CAP_SECONDS = 1800
# Answers after which a settler run sends nothing more: the upstream is unwell or pushing back, or the credentials
# cannot be read.
_HALTING_PROBLEMS = (UpstreamRateLimited, UpstreamFailed, UpstreamTimedOut, DependencyUnavailable)
# A resend's problems that the alarms count (their `metric`): a link that does not match, or another caller's.
_ALARMING_PROBLEMS = (UpstreamMismatch, UpstreamLinkConflict)


@dataclass
class SettleReport:
    """What one settler run did."""

    due: int = 0
    resent: int = 0
    settled: int = 0  # completed: the link recorded with its owner
    released: int = 0
    spent: int = 0
    unknown: int = 0
    skipped: int = 0  # not sent: a caller held it, the run was halted, or no time was left
    halted: bool = False
    oldest_due_seconds: int = 0
    stranded: int = 0
    results: dict[str, int] = field(default_factory=dict)


class PayoutLinkService:
    def __init__(
        self, *, payout_api: PayoutApiClient, owners: LinkOwners, intents: IntentStore, budget: TimeBudget
    ) -> None:
        self.payout_api = payout_api
        self._owners = owners
        self._intents = intents
        self.budget = budget

    def create_once(
        self, caller: str, key: str, request: CreatePayoutLinkRequest, *, context: LambdaContext
    ) -> Created:
        """The link for the intent (caller, key, request): created at the upstream the first time, the same link
        (`replayed`) after that. Refusals are problems that say where the key stands (`key_state`); a create that
        fails raises `CreateFailed`, its problem saying the same."""
        remaining = context.get_remaining_time_in_millis() / 1000
        deadline = time.monotonic() + remaining - self.budget.response_reserve
        intent = Intent.of(caller, key, request.upstream_payload())
        # On every line from here on: the key the upstream knows the intent by (a UUID), and the caller's own
        # (bounded: the caller chose it). Keys of this thread (the settler runs several intents at once).
        logger.thread_safe_append_keys(upstream_key=intent.upstream_key, idempotency_key=loggable(key))
        held = self._intents.lock(intent, lock_seconds=remaining)  # the lock expires with this invocation
        if isinstance(held, Created):
            return held
        return self._drive(held, deadline)

    def _drive(self, lock: Lock, deadline: float, *, settle_in: float | None = None) -> Created:
        """The locked intent sent upstream under its derived key, and its record moved by the outcome."""
        try:
            link = self.payout_api.create_payout_link(lock.intent.upstream_payload, deadline=deadline)
        except CreateFailed as failure:
            if failure.mismatched_link_id is not None:
                logger.thread_safe_append_keys(link_id=loggable(failure.mismatched_link_id))
            self._settle_failure(lock, failure, deadline, settle_in=settle_in)
            raise
        except BaseException:
            self._intents.mark_unknown(lock, settle_in=settle_in, resent=settle_in is not None)
            raise
        logger.thread_safe_append_keys(link_id=loggable(link["id"]))
        try:
            self._intents.complete(lock, link)
        except OwnedByAnother:
            raise self._owned_by_another(lock, link["id"]) from None
        except LockLost:
            # Another request of the same intent took over after this one's lock expired: it records the link.
            problem: Problem = RequestInProgress("A retry of this request is recording the payout link; retry later.")
            raise CreateFailed(problem.bound_to(KeyState.BOUND), Outcome.UNKNOWN) from None
        except StoreUnavailable as failed:
            # The link exists: the same body gets the same link again, and records it.
            logger.error("idempotency store failed", extra={"store_error": failed.code})
            self._drop_lock_until(lock, deadline + self.budget.aws_call, settle_in=settle_in)
            problem = DependencyUnavailable(
                "The idempotency store is unavailable; retry with the same key.", dependency=Dependency.DYNAMODB
            )
            raise CreateFailed(problem.bound_to(KeyState.BOUND), Outcome.UNKNOWN) from None
        return Created(link=link)

    def _drop_lock_until(self, lock: Lock, answer_by: float, *, settle_in: float | None) -> None:
        """Drop the lock (`mark_unknown`) after the write that was to record the outcome failed, waiting for it at
        most until `answer_by`. The reserve held that first write, not a second one: a dependency that was slow
        once may be slow again, and the answer must still come in time. A drop that is not done by then goes on
        while the answer is sent (in Lambda: until the environment is frozen, then when it thaws); its condition on
        the lock token keeps a late one from touching anyone else's lock. Until the drop lands, a retry meets the
        lock (409) until it expires with this invocation, and the settler finds the intent either way, so that
        the immediate retry of the same body gets the link whenever the store answers as it usually does."""
        done = threading.Event()

        def drop() -> None:
            try:
                self._intents.mark_unknown(
                    lock, settle_in=settle_in, resent=settle_in is not None, after_store_failure=True
                )
            finally:
                done.set()

        # In this thread's logging context: its lines name the intent as this thread's do.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(drop,), name="drop-lock", daemon=True).start()
        if not done.wait(timeout=max(0.0, answer_by - time.monotonic())):
            logger.warning("the lock is still being dropped as the answer goes: it expires with this invocation")

    def _write_fits(self, deadline: float, *, after_calls: int) -> bool:
        """Whether `after_calls` AWS calls and then one write, started now, end before the answer is due: the reserve
        after the upstream `deadline` holds one write and the answer, so they fit while the calls before the write
        end by the `deadline`."""
        return time.monotonic() + after_calls * self.budget.aws_call <= deadline

    def _settle_failure(self, lock: Lock, failure: CreateFailed, deadline: float, *, settle_in: float | None) -> None:
        """Move the record by the failure's outcome, and say in its problem where that left the key."""
        if failure.mismatched_link_id is not None:
            failure.problem = self._cancel_mismatched(lock, failure.mismatched_link_id, deadline, settle_in=settle_in)
            return
        if failure.releases(inherited=lock.inherited):
            failure.problem.bound_to(self._intents.release(lock))
        else:
            self._kept_bound(lock, failure.problem, settle_in=settle_in)

    def _kept_bound(self, lock: Lock, problem: Problem, *, settle_in: float | None) -> Problem:
        """`problem`, its key kept bound: the lock dropped, the intent queued for the settler (`settle_in`, for a
        settler's resend: its backoff). An upstream failure (502, 504) says when to retry: Dots' own Retry-After
        where it gave one, BOUND_RETRY_AFTER_SECONDS otherwise."""
        problem.bound_to(self._intents.mark_unknown(lock, settle_in=settle_in, resent=settle_in is not None))
        if problem.retry_after_when_bound and problem.retry_after is None:
            problem.retry_after = BOUND_RETRY_AFTER_SECONDS
        return problem

    def _spent(self, lock: Lock, problem: Problem) -> Problem:
        """`problem`, kept as the answer to every retry of a key that will never make a link."""
        return problem.bound_to(self._intents.spend(lock, problem))

    def _cancel_mismatched(self, lock: Lock, link_id: str, deadline: float, *, settle_in: float | None) -> Problem:
        """A link that does not match its request was made under the intent's own derived key, so no one will ever
        be handed it: cancel it at the upstream and spend the key. Should the cancel fail, the key stays bound and
        the settler tries again (the upstream returns the same link for the same key). A link the proxy recorded
        for anyone (another caller, another key) is never canceled here: that is an owner conflict."""
        if not self._write_fits(deadline, after_calls=1):
            # The owner check, then the cancel and the write, do not fit in what is left: the settler does them.
            problem: Problem = UpstreamMismatch(
                "The payout provider made a link that does not match the request; the proxy cancels it. Retry with "
                "the same key and body to follow it, or send a new request with a new key."
            )
            return self._kept_bound(lock, problem, settle_in=settle_in)
        try:
            recorded = self._owners.is_recorded(link_id)
        except Problem:
            problem = UpstreamMismatch(
                "The payout provider made a link that does not match the request; retry with the same key and body."
            )
            return self._kept_bound(lock, problem, settle_in=settle_in)
        if recorded:
            return self._owned_by_another(lock, link_id).problem
        try:
            self.payout_api.cancel_payout_link(link_id, deadline=deadline, recorded=False)
        except NotCancelable:
            logger.error("a mismatched link could not be canceled", extra={"link_id": loggable(link_id)})
            metrics.add_metric(name="MismatchedLinkNotCanceled", unit=MetricUnit.Count, value=1)
            return self._spent(
                lock,
                UpstreamMismatch(
                    "The payout provider made a link that does not match the request, and it could no longer be "
                    "canceled; this key cannot be used again. Contact support with the request id."
                ),
            )
        except Problem:
            logger.warning("a mismatched link is not canceled yet", extra={"link_id": loggable(link_id)})
            problem = UpstreamMismatch(
                "The payout provider made a link that does not match the request; the proxy cancels it. Retry with "
                "the same key and body to follow it, or send a new request with a new key."
            )
            return self._kept_bound(lock, problem, settle_in=settle_in)
        logger.warning("a mismatched link was canceled", extra={"link_id": loggable(link_id)})
        metrics.add_metric(name="MismatchedLinkCanceled", unit=MetricUnit.Count, value=1)
        return self._spent(
            lock,
            UpstreamMismatch(
                "The payout provider made a link that does not match the request; it was canceled, and this key "
                "cannot be used again. Send the request again with a new key."
            ),
        )

    def _owned_by_another(self, lock: Lock, link_id: str) -> CreateFailed:
        """The upstream answered with a link whose id another caller already owns: never handed out, never
        recorded for this caller, and not canceled (it is the other caller's)."""
        logger.error("the upstream's link is already recorded for another owner", extra={"link_id": loggable(link_id)})
        problem = UpstreamLinkConflict(
            "The payout provider answered with a payout link that belongs to another request; this key cannot be "
            "used again. Contact support with the request id."
        )
        return CreateFailed(self._spent(lock, problem), Outcome.UNKNOWN)

    # --- the settler -------------------------------------------------------------------------------------------

    def settle_due(
        self, *, remaining_seconds: float, max_resends: int, concurrency: int, settle_after_seconds: int
    ) -> SettleReport:
        """Resend the intents that are due, the longest due first: at most `max_resends`, `concurrency` at a time,
        none started once too little time is left for it, and none after the upstream's first 429, 5xx or timeout
        (the rest wait for the next run). Each goes through the same lock, the same stored request and the same
        derived key as its caller's retry."""
        run_deadline = time.monotonic() + remaining_seconds - self.budget.response_reserve
        report = SettleReport()
        due = self._intents.due(limit=max_resends)
        report.due = len(due)
        now = int(time.time())
        report.oldest_due_seconds = max((now - intent.since for intent in due), default=0)
        halt = threading.Event()
        counts_lock = threading.Lock()

        def settle(intent: DueIntent) -> str:
            result = self._settle_one(intent, run_deadline, halt, settle_after_seconds)
            with counts_lock:
                report.results[result] = report.results.get(result, 0) + 1
            return result

        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="settle") as pool:
            list(pool.map(settle, due))
        report.resent = sum(
            count for result, count in report.results.items() if result not in ("skipped", "not-sent", "stranded")
        )
        for name in ("settled", "released", "spent", "unknown", "skipped"):
            setattr(report, name, report.results.get(name, 0))
        report.halted = halt.is_set()
        report.stranded = self._intents.stranded_count()
        return report

    def _settle_one(self, due: DueIntent, run_deadline: float, halt: threading.Event, settle_after: int) -> str:
        """One due intent: resent, or left for the next run; or, when it is about to expire unsettled and this run
        cannot resend it, stranded for operators."""
        # Every line about this intent (stranded, taken over, resent) names its caller and its keys, as a request's
        # lines do (this thread's alone).
        if (intent := due.intent()) is not None:
            logger.thread_safe_append_keys(
                caller=loggable_caller(intent.caller),
                upstream_key=intent.upstream_key,
                idempotency_key=loggable(intent.key),
            )
        try:
            return self._settle_named(due, run_deadline, halt, settle_after)
        finally:
            logger.thread_safe_remove_keys(["caller", "upstream_key", "idempotency_key", "link_id"])

    def _settle_named(self, due: DueIntent, run_deadline: float, halt: threading.Event, settle_after: int) -> str:
        attempt_seconds = self.payout_api.attempt_timeout + self.budget.aws_call  # a secret read, then one POST
        try:
            if halt.is_set() or time.monotonic() + attempt_seconds > run_deadline:
                return "stranded" if self._intents.expiring(due) and self._intents.strand(due) else "skipped"
            deadline = min(run_deadline, time.monotonic() + attempt_seconds)
            lock_seconds = deadline - time.monotonic() + self.budget.response_reserve
            lock = self._intents.take_over_due(due, lock_seconds=lock_seconds)
        except (Problem, StoreUnavailable) as failed:
            if isinstance(failed, StoreUnavailable):
                logger.error("idempotency store failed", extra={"store_error": failed.code})
            # A resend DynamoDB kept the settler from making, counted as a caller's 503 would be.
            count_dependency_unavailable(Dependency.DYNAMODB)
            halt.set()  # the store failed: the next run tries again
            return "skipped"
        if lock is None:
            return "skipped"
        backoff = min(SETTLE_BACKOFF_CAP_SECONDS, settle_after * 2 ** (lock.attempts + 1))
        try:
            created = self._drive(lock, deadline, settle_in=backoff)
        except CreateFailed as failure:
            if isinstance(failure.problem, _HALTING_PROBLEMS):
                halt.set()
            if isinstance(failure.problem, DependencyUnavailable):
                # What the API's error handler counts for a caller's 503, counted for the settler's resend.
                count_dependency_unavailable(failure.problem.dependency or "unknown")
                return "not-sent"  # the credentials could not be read: nothing reached the upstream
            if isinstance(failure.problem, _ALARMING_PROBLEMS):
                # What the API's error handler counts for a caller's create, counted for the settler's.
                metrics.add_metric(name=str(failure.problem.metric), unit=MetricUnit.Count, value=1)
            return {"released": "released", "spent": "spent"}.get(failure.problem.key_state or "", "unknown")
        except Problem:
            halt.set()  # the store failed: the next run tries again
            return "unknown"
        logger.info(
            "intent settled: payout link recorded",
            extra={
                "link_id": loggable(created.link["id"]),
                "caller": loggable_caller(lock.intent.caller),
                "upstream_key": lock.intent.upstream_key,
            },
        )
        return "settled"

    # --- a caller's own links ----------------------------------------------------------------------------------

    def read_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """The link as the upstream has it now, for its owner only (`LinkNotFound` for anyone else)."""
        deadline = _lifecycle_deadline(remaining_millis)  # before the owner check: its time counts too
        self._owners.require_owner(caller, link_id)
        _name_the_link(link_id)
        return self.payout_api.retrieve_payout_link(link_id, deadline=deadline)

    def cancel_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """Cancel the link at the upstream and return it, canceled; for its owner only."""
        deadline = _lifecycle_deadline(remaining_millis)
        self._owners.require_owner(caller, link_id)
        _name_the_link(link_id)
        return self.payout_api.cancel_payout_link(link_id, deadline=deadline)

    def list_payout_links(
        self, caller: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the links `caller` created, newest first, and the cursor to the next page (None on the last):
        from the owner records alone, never from the upstream."""
        return self._owners.list_links(caller, limit=limit, cursor=cursor)


def _name_the_link(link_id: str) -> None:
    """Every line from here on names the link: the caller's own, now that the owner check passed. A refused id is
    never logged (it is whatever a prober tried)."""
    logger.thread_safe_append_keys(link_id=loggable(link_id))


def _lifecycle_deadline(remaining_millis: int) -> float:
    return time.monotonic() + remaining_millis / 1000 - LIFECYCLE_RESERVE_SECONDS


@cache
def get_service() -> PayoutLinkService:
    settings = get_settings()
    budget = settings.budget
    if budget.function_timeout < MIN_FUNCTION_TIMEOUT_SECONDS:
        # Once per container, at its start: the one place that names the cause, where each request would only see
        # its share of it.
        logger.error(
            f"the function's timeout ({budget.function_timeout:g} s) is below the {MIN_FUNCTION_TIMEOUT_SECONDS} s "
            "its time budget needs: a cold create whose AWS calls are slow may leave Dots no time (budget.py)",
            extra={"function_timeout_seconds": budget.function_timeout},
        )
    credentials = CredentialsStore(
        aws.client("secretsmanager"),
        settings.payout_api_secret_id,
        max_age_seconds=settings.credentials_max_age_seconds,
        aws_call_seconds=budget.aws_call,
    )
    http = deadline_client(
        headers={"Accept": "application/json", "User-Agent": "payout-link-proxy"},
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=30),
        follow_redirects=False,
    )
    payout_api = PayoutApiClient(
        http,
        settings.payout_links_url,
        credentials,
        attempt_timeout=settings.payout_api_timeout_seconds,
        max_attempts=settings.payout_api_max_attempts,
    )

    owners = LinkOwners(
        dynamodb_client=aws.client("dynamodb"),
        table_name=settings.link_owners_table_name,
        retention_seconds=settings.link_owner_retention_days * 86_400,
    )
    limits = CallerLimits(
        dynamodb_client=aws.client("dynamodb"),
        table_name=settings.idempotency_table_name,
        daily_amount_cents=settings.caller_daily_amount_limit_cents,
        hourly_links=settings.caller_hourly_link_limit,
        overrides_max_age_seconds=settings.limit_overrides_max_age_seconds,
    )
    intents = IntentStore(
        client=aws.client("dynamodb"),
        table_name=settings.idempotency_table_name,
        owners=owners,
        limits=limits,
        ttl_seconds=settings.idempotency_ttl_seconds,
        settle_after_seconds=settings.settle_after_seconds,
    )
    return PayoutLinkService(payout_api=payout_api, owners=owners, intents=intents, budget=budget)


@cache
def get_partner_secrets() -> PartnerSecrets:
    settings = get_settings()
    return PartnerSecrets(
        aws.client("secretsmanager"),
        settings.required_partner_webhook_secrets_id(),
        max_age_seconds=settings.credentials_max_age_seconds,
        unknown_partner_refresh_seconds=settings.unknown_partner_refresh_seconds,
    )


def reset() -> None:
    """Forget everything this container keeps between invocations, as a new execution environment starts without
    it: the settings, the service (its clients, the idempotency store's local cache, the cached credentials), the
    partner secrets, the AWS session and clients, the API document, and Powertools' cold-start flags, so that the
    next invocation logs and counts a cold start. For tests; in Lambda a container is never reset."""
    from aws_lambda_powertools.logging import logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start

    get_settings.cache_clear()
    get_service.cache_clear()
    get_partner_secrets.cache_clear()
    api_docs.openapi_document.cache_clear()
    aws.reset()
    powertools_logger.is_cold_start = True
    cold_start.is_cold_start = True
