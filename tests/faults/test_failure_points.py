"""Exactly once, at every point where a request can die.

Each test breaks one thing with real components (a moto server over HTTP, the Dots emulator over HTTP, real
function processes that are killed), checks what the caller sees, and ends with the number of payout links the
upstream created for the intent: always 0 or 1.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from local_stack.core.aws_resources import free_port
from local_stack.core.workers import InvocationFailed
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator
from payout_links import service
from payout_links.problems import PROBLEM_TYPE_PREFIX
from payout_links.upstream import PayoutApiClient
from tests.faults.aws_fault_proxy import SERVICE_UNAVAILABLE
from tests.support import (
    BUDGET,
    create_event,
    frontend_headers,
    http_event,
    http_result,
    new_key,
    payout_body,
    wait_until,
)

pytestmark = pytest.mark.faults


def links_created(upstream) -> int:
    return upstream.stats()["links_created"]


def only_link_id(upstream) -> str:
    (link_id,) = upstream.stats()["links"].values()
    return link_id


def warmed(upstream, *invocations) -> None:
    """Each invocation serves one create in its own container, which keeps the credentials it read; the upstream
    then forgets those links. A short function timeout then leaves its whole upstream budget to the upstream,
    not to reading a secret (which needs the worst case of an AWS call before the deadline)."""
    for invoke in invocations:
        assert invoke().status == 201
    upstream.reset()


# -- the function dies -------------------------------------------------------------------------------------


def test_process_killed_after_the_upstream_created_the_link(containers, upstream):
    """The link exists upstream, the record still says INPROGRESS, and the process is gone: while the lock lives
    the same body gets 409, another body 422 at any time, and once the lock has expired the same body gets the
    link that exists."""
    # The function's timeout: reading the credentials (the worst case of an AWS call), a second for the upstream,
    # and the reserve to record the result and answer.
    lock_seconds = BUDGET.response_reserve + BUDGET.aws_call + 1.0
    first, second = containers(lock_seconds), containers(lock_seconds)
    # Clients built (a cold container's slowest part) by reading a link nobody has: however slowly a container
    # starts, the create then has its whole upstream budget.
    for container in (first, second):
        unknown = http_event("GET", f"/payout-links/{new_key()}", headers=frontend_headers(key=None))
        assert http_result(container.invoke(unknown, "warm"), unknown).status == 404
    key = new_key()
    event = create_event(key=key)
    # Created, then the answer is held for longer than the function waits: it can only end by being killed.
    upstream.inject({"delay_seconds": lock_seconds, "after_create": True})
    crashed: list[Exception] = []

    def invoke_and_crash() -> None:
        try:
            first.invoke(event, "first")
        except InvocationFailed as exc:
            crashed.append(exc)

    caller = threading.Thread(target=invoke_and_crash)
    sent_at = time.monotonic()
    caller.start()
    wait_until(lambda: links_created(upstream) == 1 or not caller.is_alive(), timeout=lock_seconds + 5)
    seen_created = time.monotonic()
    assert links_created(upstream) == 1, "the invocation ended without creating the link"
    os.kill(first.pid, signal.SIGKILL)  # dies before it can record COMPLETED
    caller.join()
    assert crashed and not first.alive()

    while_locked = http_result(second.invoke(event, "retry-1"), event)
    assert while_locked.status == 409 and while_locked.is_problem()
    assert int(while_locked.headers["Retry-After".lower()]) >= 1
    other_event = create_event(payout_body(amount=9_999), key=key)
    other_body = http_result(second.invoke(other_event, "other-1"), other_event)
    assert other_body.status == 422 and other_body.json()["type"].endswith("idempotency-key-reused")

    # The lock lives for the function's timeout from the invocation's start: it expires no earlier than
    # `sent_at + lock_seconds`, so late in that span the same body is still in progress...
    wait_until(lambda: time.monotonic() >= sent_at + lock_seconds - 1.5, timeout=lock_seconds)
    late_in_the_lock = http_result(second.invoke(event, "retry-late"), event)
    assert late_in_the_lock.status == 409, late_in_the_lock.body
    # ...and no later than `lock_seconds` after the link was seen upstream (the invocation started before that).
    wait_until(lambda: time.monotonic() > seen_created + lock_seconds + 0.2, timeout=lock_seconds + 5)
    other_body_later = http_result(second.invoke(other_event, "other-2"), other_event)
    assert other_body_later.status == 422  # the expired lock is not the other body's to take
    after_expiry = http_result(second.invoke(event, "retry-2"), event)
    assert after_expiry.status == 201
    assert after_expiry.json()["id"] == only_link_id(upstream)
    assert links_created(upstream) == 1


# -- the upstream may have made the link, and the proxy cannot know -----------------------------------------
# (the ambiguous answers themselves, and what each leaves of the key: tests/integration/test_outcomes_and_keys.py)

ATTEMPT_SECONDS = 0.5
ATTEMPTS = 3


# -- DynamoDB ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [None, SERVICE_UNAVAILABLE], ids=["throttled", "unavailable"])
def test_dynamodb_failing_when_taking_the_lock(function, upstream, aws_faults, error):
    key = new_key()
    aws_faults.fail("DynamoDB_20120810.PutItem", **({"error": error} if error else {}))

    refused = function.create(key=key)

    assert refused.status == 503 and refused.is_problem()
    assert int(refused.headers["retry-after"]) >= 1
    assert upstream.stats()["requests"] == 0
    aws_faults.heal()
    assert function.create(key=key).status == 201  # nothing was half-done
    assert links_created(upstream) == 1


def test_dynamodb_unreachable_when_taking_the_lock(function, upstream):
    function.set_env(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")

    refused = function.create()

    assert refused.status == 503 and "retry-after" in refused.headers
    assert links_created(upstream) == 0


def test_missing_table_is_a_503(function, upstream):
    function.set_env(IDEMPOTENCY_TABLE_NAME="no-such-table")

    refused = function.create()

    assert refused.status == 503 and refused.is_problem()
    assert links_created(upstream) == 0


def test_dynamodb_failing_when_saving_the_result(function, upstream, aws_faults):
    """The link was made, but the record cannot say so (nor who owns the link). The caller sees 503; the lock is
    dropped at once and the fingerprint kept, so another body is still refused and the same body's retry reaches
    the upstream with the same derived key: the same link, now recorded, and readable by its owner."""
    warmed(upstream, function.create)
    key = new_key()
    aws_faults.fail("DynamoDB_20120810.TransactWriteItems")

    failed = function.create(key=key)
    assert failed.status == 503 and failed.is_problem() and "retry-after" in failed.headers
    assert links_created(upstream) == 1
    link_id = only_link_id(upstream)
    assert function.request("GET", f"/payout-links/{link_id}", headers=frontend_headers(key=None)).status == 404

    aws_faults.heal()
    assert function.create(payout_body(amount=9_999), key=key).status == 422
    retry = function.create(key=key)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers
    assert retry.json()["id"] == link_id
    assert links_created(upstream) == 1
    assert function.request("GET", f"/payout-links/{link_id}", headers=frontend_headers(key=None)).status == 200


def test_dynamodb_timing_out_when_saving_the_result(function, upstream, aws_faults):
    """The completion's answers never come back in time (a transport error, with no response to read), and the
    upstream took all but a second of its budget: the write gets only the time kept back for it, and the answer
    comes before the function's timeout. The lock is still dropped at once, so the same body's immediate retry
    gets the link instead of 409 until the function's timeout. The late transactions then find the record no
    longer theirs and change nothing."""
    warmed(upstream, function.create)
    key = new_key()
    timeout = BUDGET.response_reserve + 1.5  # 1.5 s for the upstream after the reserve
    upstream.inject({"delay_seconds": timeout - BUDGET.response_reserve - 1.0})
    aws_faults.stall("DynamoDB_20120810.TransactWriteItems", seconds=3, count=2)

    started = time.monotonic()
    failed = function.create(key=key, timeout_seconds=timeout)
    elapsed = time.monotonic() - started
    assert failed.status == 503 and failed.is_problem() and "retry-after" in failed.headers
    assert elapsed < timeout, elapsed
    link_id = only_link_id(upstream)

    assert function.create(payout_body(amount=2600), key=key).status == 422
    retry = function.create(key=key)
    assert retry.status == 201 and retry.json()["id"] == link_id
    assert aws_faults.wait_idle(timeout=10)  # the stalled transactions have landed
    replay = function.create(key=key)
    assert replay.status == 201 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json()["id"] == link_id and links_created(upstream) == 1


# -- Secrets Manager ---------------------------------------------------------------------------------------


def test_secrets_manager_throttled(function, upstream, aws_faults):
    key = new_key()
    aws_faults.fail("secretsmanager.GetSecretValue")

    refused = function.create(key=key)

    assert refused.status == 503 and refused.is_problem() and "retry-after" in refused.headers
    assert upstream.stats()["requests"] == 0
    aws_faults.heal()
    retry = function.create(key=key)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers  # the key was released
    assert links_created(upstream) == 1


def test_a_stalled_secret_read_is_a_503_before_the_timeout_and_releases_the_key(function, upstream, aws_faults):
    """A cold container's secret reads reach Secrets Manager, and their answers come too late: the request gets a
    503 well before the function's timeout, and the key is released, since Dots was never asked."""
    timeout = BUDGET.response_reserve + BUDGET.aws_call + 3
    key = new_key()
    aws_faults.stall("secretsmanager.GetSecretValue", seconds=3, forward=True)

    started = time.monotonic()
    failed = function.create(key=key, timeout_seconds=timeout)
    elapsed = time.monotonic() - started

    assert failed.status == 503 and failed.json()["type"] == PROBLEM_TYPE_PREFIX + "dependency-unavailable"
    assert "retry-after" in failed.headers
    assert elapsed < timeout, elapsed
    assert upstream.stats()["requests"] == 0
    aws_faults.heal()
    retry = function.create(payout_body(amount=2600), key=key)  # released: even a corrected body may use it
    assert retry.status == 201, retry.body
    assert retry.json()["id"] == only_link_id(upstream)
    assert aws_faults.wait_idle(timeout=5)


def test_secrets_manager_unreachable(function, upstream):
    function.set_env(AWS_ENDPOINT_URL_SECRETS_MANAGER=f"http://127.0.0.1:{free_port()}")

    refused = function.create()

    assert refused.status == 503 and "retry-after" in refused.headers
    assert links_created(upstream) == 0


def test_secret_missing(function, upstream):
    function.set_env(PAYOUT_API_SECRET_ID="payout-link-proxy/local/no-such-secret")

    refused = function.create()

    assert refused.status == 503 and refused.is_problem()
    assert upstream.stats()["requests"] == 0
    assert links_created(upstream) == 0


# -- the upstream fails ------------------------------------------------------------------------------------


class Backoffs:
    """The upstream client's sleeps between attempts: each is recorded, and `before_first` runs before the first."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.before_first: Callable[[], object] | None = None

    def sleep(self, seconds: float) -> None:
        if not self.slept and self.before_first is not None:
            self.before_first()
        self.slept.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def backoffs(monkeypatch) -> Backoffs:
    """The container's upstream client sleeps through a `Backoffs` (its constructor takes the sleep to use)."""
    recorder = Backoffs()
    monkeypatch.setattr(service, "PayoutApiClient", functools.partial(PayoutApiClient, sleep=recorder.sleep))
    return recorder


def test_connection_refused_is_retried(function, upstream, backoffs):
    """Nothing listens on the upstream's port at the first attempt (refused: the request never left); the
    upstream comes up during the backoff, and the retry is the one request it sees, which makes the link."""
    port = free_port()
    late = DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY, port=port)
    backoffs.before_first = late.start
    function.set_env(PAYOUT_API_BASE_URL=f"http://127.0.0.1:{port}/api")
    try:
        result = function.create()
    finally:
        late.stop()

    assert result.status == 201 and "idempotent-replayed" not in result.headers
    assert len(backoffs.slept) == 1  # one refused attempt, then the one that reached the upstream
    assert late.stats()["creates"] == 1 and late.stats()["links_created"] == 1
    assert result.json()["id"] == only_link_id(late)
    assert upstream.stats()["requests"] == 0


def test_an_upstream_that_stays_unreachable_is_a_502_after_every_attempt(function, upstream, backoffs):
    function.set_env(PAYOUT_API_BASE_URL=f"http://127.0.0.1:{free_port()}/api", PAYOUT_API_MAX_ATTEMPTS="3")

    result = function.create()

    assert result.status == 502 and result.is_problem()
    assert len(backoffs.slept) == 2  # three attempts, each refused
    assert links_created(upstream) == 0


def test_retries_stop_in_time_to_answer_before_the_deadline(function, upstream):
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="5")
    timeout = BUDGET.response_reserve + 2.5  # at most 2.5 s for the upstream after the reserve
    warmed(upstream, function.create)
    upstream.inject({"delay_seconds": 0.7, "status": 503, "count": 5})

    started = time.monotonic()
    result = function.create(timeout_seconds=timeout)
    elapsed = time.monotonic() - started

    assert result.status in (502, 504) and result.is_problem()
    assert elapsed < timeout - BUDGET.response_reserve + 0.5  # the function kept its reserve to record and answer
    assert 2 <= upstream.stats()["requests"] < 5  # the deadline, not the attempt cap, ended the retries
    assert links_created(upstream) == 0


def test_slow_upstream_is_cut_at_the_deadline(function, upstream):
    warmed(upstream, function.create)
    key = new_key()
    upstream.inject({"delay_seconds": 3, "count": 3})

    # 1.5 s for the upstream after the reserve
    result = function.create(key=key, timeout_seconds=BUDGET.response_reserve + 1.5)

    assert result.status == 504 and result.is_problem()
    assert upstream.stats()["requests"] == 1
    assert upstream.wait_idle()
    assert links_created(upstream) == 1  # the emulator finished the slow request after we gave up
    retry = function.create(key=key)
    assert retry.status == 201 and retry.json()["id"] == only_link_id(upstream)
    assert links_created(upstream) == 1


def test_a_trickling_upstream_is_cut_at_the_attempt_budget(function, upstream):
    """An answer dribbled a byte at a time never times out a single read: each attempt is cut at its budget all
    the same, and the key stays bound to its body (the link was made)."""
    function.set_env(PAYOUT_API_TIMEOUT_SECONDS=str(ATTEMPT_SECONDS), PAYOUT_API_MAX_ATTEMPTS=str(ATTEMPTS))
    warmed(upstream, function.create)
    key = new_key()
    upstream.inject({"trickle_seconds": 0.5, "count": ATTEMPTS})  # about 500 bytes: minutes per answer

    started = time.monotonic()
    first = function.create(key=key)
    elapsed = time.monotonic() - started

    assert first.status == 504 and first.json()["type"] == PROBLEM_TYPE_PREFIX + "upstream-timeout"
    # The attempts, and the jittered backoffs between them (at most 0.2 s, then 0.4 s).
    assert elapsed < ATTEMPTS * ATTEMPT_SECONDS + 0.6 + 1.0, elapsed
    assert upstream.stats()["requests"] == ATTEMPTS
    link_id = only_link_id(upstream)
    # The emulator trickles on to a client that left until a write fails: at most a byte or two later.
    idle_started = time.monotonic()
    assert upstream.wait_idle(timeout=5)
    assert time.monotonic() - idle_started < 3

    assert function.create(payout_body(amount=2600), key=key).status == 422
    retry = function.create(key=key)
    assert retry.status == 201 and retry.json()["id"] == link_id
    assert links_created(upstream) == 1


@pytest.mark.parametrize(("retry_after", "expected"), [("7", "7"), (None, "5")])
def test_upstream_rate_limit_is_passed_on(function, upstream, retry_after, expected):
    upstream.inject({"status": 429, **({"retry_after": retry_after} if retry_after else {})})

    result = function.create()

    assert result.status == 429 and result.is_problem()
    assert result.headers["retry-after"] == expected
    assert upstream.stats()["requests"] == 1  # not retried inside the request: the caller decides
    assert links_created(upstream) == 0


def test_credentials_rejected_twice(function, upstream):
    upstream.set_credentials("rotated-elsewhere", "not-yet-in-the-secret")
    key = new_key()

    result = function.create(key=key)

    assert result.status == 502 and result.is_problem()
    for secret in (DEMO_CLIENT_ID, DEMO_API_KEY, "rotated-elsewhere", "not-yet-in-the-secret"):
        assert secret not in result.body.decode()
    assert upstream.stats()["requests"] == 2  # the first answer, then once more after re-reading the secret
    assert links_created(upstream) == 0


# -- a key that was bound stays bound -----------------------------------------------------------------------


def test_a_slow_lock_write_that_lands_is_the_requests_own_lock(function, upstream, aws_faults):
    """The lock lands at once, its answer comes after botocore's read timeout: botocore sends it again, and that
    write finds the request's own lock (its token), not another request's."""
    key = new_key()
    aws_faults.stall("DynamoDB_20120810.PutItem", seconds=BUDGET.aws_read_timeout + 0.5, count=1, forward=True)

    created = function.create(key=key)

    assert created.status == 201, created.body
    assert aws_faults.calls.count("DynamoDB_20120810.PutItem") == 2  # the retry found the request's own lock
    assert created.json()["id"] == only_link_id(upstream)
    replay = function.create(key=key)
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.body == created.body
    assert links_created(upstream) == 1
    assert aws_faults.wait_idle(timeout=5)


def test_a_lock_write_that_lands_after_both_attempts_timed_out_does_not_lock_the_caller_out(
    function, upstream, aws_faults
):
    key = new_key()
    aws_faults.stall("DynamoDB_20120810.PutItem", seconds=1.5, forward=True, count=2)

    refused = function.create(key=key)
    assert refused.status == 503 and upstream.stats()["requests"] == 0

    retry = function.create(key=key)  # at once: not a 409 until the first invocation's timeout
    assert retry.status == 201
    assert links_created(upstream) == 1


def test_a_release_that_fails_still_answers_what_the_upstream_said(function, upstream, aws_faults):
    upstream.inject({"status": 422})
    aws_faults.fail("DynamoDB_20120810.DeleteItem", count=2)

    result = function.create()

    assert result.status == 422 and result.json()["type"].endswith("upstream-rejected")


# -- reads and cancels end in time, whatever their owner check took ---------------------------------------------


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_slow_owner_check_is_counted_against_a_reads_deadline(function, upstream, aws_faults, method):
    """The owner record answers slowly (just under botocore's read timeout), then Dots stalls: the answer still
    comes before the function's time is up, because the upstream's deadline counts the time the check took."""
    link_id = function.create().json()["id"]
    timeout_seconds = 2.5
    aws_faults.stall("DynamoDB_20120810.GetItem", seconds=BUDGET.aws_read_timeout - 0.1, count=1)
    upstream.inject({"delay_seconds": 5})

    started = time.monotonic()
    answer = function.request(
        method, f"/payout-links/{link_id}", headers=frontend_headers(), timeout_seconds=timeout_seconds
    )
    elapsed = time.monotonic() - started

    assert answer.status == 504 and answer.is_problem(), answer.body
    assert elapsed < timeout_seconds, f"answered after {elapsed:.2f} s, past the function's {timeout_seconds} s"
    assert aws_faults.wait_idle(timeout=5)
