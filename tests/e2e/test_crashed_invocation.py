"""Unknown outcomes, end to end: the local stack driven over HTTP exactly as a caller would drive it.

When the proxy cannot know whether Dots made the link (a 5xx after the request was sent, a dropped connection,
an unreadable or mismatching 2xx, a timeout, a crash), the idempotency key stays bound to its request: the same
key with another body is refused (422), the same body gets the link that may already exist. Every answer comes
as application/problem+json before the function's timeout. The witness is the emulator's own count of links:
exactly one per intent, whatever happened on the way.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from payout_links import aws
from payout_links.problems import PROBLEM_TYPE_PREFIX
from payout_links.service import RESPONSE_RESERVE_SECONDS
from tests.conftest import start_stack
from tests.faults.aws_fault_proxy import AwsFaultProxy
from tests.support import LINK_KEYS, HttpResult, RunningStack, frontend_headers, new_key, payout_body

pytestmark = pytest.mark.e2e

# The session `stack` fixture's function (tests/conftest.py): 1 s per upstream attempt, 3 attempts per request.
ATTEMPT_SECONDS = 1.0
ATTEMPTS = 3
# The jittered backoff between attempts is at most 0.2 s, then 0.4 s (upstream.BACKOFF_BASE_SECONDS doubled).
BACKOFF_SECONDS = 0.2 + 0.4


def dedicated_timeout_seconds() -> float:
    """A dedicated stack's function timeout: the reserve kept to answer, the worst case of one AWS call (a cold
    container reads its secret only with that much time left before the upstream deadline), and 3 s for Dots."""
    return RESPONSE_RESERVE_SECONDS + aws.WORST_CASE_CALL_SECONDS + 3


@pytest.fixture
def api(stack: RunningStack, upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client


def post(api: httpx.Client, body: dict[str, Any] | None = None, *, key: str | None, **headers: str) -> HttpResult:
    response = api.post(
        "/payout-links",
        json=payout_body() if body is None else body,
        headers=frontend_headers(key=key, headers=headers),
    )
    return HttpResult(response.status_code, dict(response.headers), response.content)


def assert_problem(result: HttpResult, status: int, slug: str) -> None:
    assert result.status == status, (result.status, result.body[:500])
    assert result.is_problem(), (result.headers, result.body[:500])
    assert result.json()["type"] == PROBLEM_TYPE_PREFIX + slug, result.body


def only_link_id(upstream) -> str:
    """The id of the one link the emulator made; fails if it made none or several."""
    stats = upstream.stats()
    assert stats["links_created"] == 1, stats["links"]
    (link_id,) = stats["links"].values()
    return link_id


def poll[T](fetch: Callable[[], T], until: Callable[[T], bool], *, timeout: float, interval: float) -> T:
    """Call `fetch` until its value satisfies `until`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout} s"
        time.sleep(interval)


def retry_while_in_progress(api: httpx.Client, body: dict[str, Any], *, key: str, timeout: float) -> HttpResult:
    """Retry as a caller told 409 would: until the request is no longer in progress."""

    def attempt() -> HttpResult:
        result = post(api, body, key=key)
        if result.status == 409:
            assert_problem(result, 409, "request-in-progress")
            assert int(result.headers["retry-after"]) >= 1
        return result

    return poll(attempt, lambda result: result.status != 409, timeout=timeout, interval=0.5)


# -- 1. every ambiguous failure keeps the key bound; the retry gets the one link ----------------------------

AMBIGUOUS_FAILURES = {
    # mode: (fault, upstream requests the first call makes, status, problem)
    "500-after-create": ({"status": 500, "after_create": True, "count": ATTEMPTS}, ATTEMPTS, 502, "upstream-failed"),
    "dropped-after-create": ({"drop": True, "after_create": True, "count": ATTEMPTS}, ATTEMPTS, 502, "upstream-failed"),
    "unreadable-2xx": ({"status": 201, "raw_body": "<html>", "after_create": True}, 1, 502, "upstream-failed"),
    # Two answers that misstate the amount: the first request's, and its first retry's.
    "mismatching-2xx": ({"link_overrides": {"amount": 1.0}, "count": 2}, 1, 502, "upstream-mismatch"),
    "timeout-after-create": (
        {"delay_seconds": ATTEMPT_SECONDS + 0.5, "after_create": True, "count": ATTEMPTS},
        ATTEMPTS,
        504,
        "upstream-timeout",
    ),
}


@pytest.mark.parametrize("mode", list(AMBIGUOUS_FAILURES))
def test_ambiguous_failure_keeps_the_key_bound_and_the_retry_gets_the_one_link(api, upstream, mode):
    fault, requests, status, slug = AMBIGUOUS_FAILURES[mode]
    key = new_key()
    upstream.inject(fault)

    first = post(api, key=key)

    assert_problem(first, status, slug)
    stats = upstream.stats()
    assert stats["requests"] == requests  # every fault was used up by the first request (but a mismatch's)
    link_id = only_link_id(upstream)

    reused = post(api, payout_body(amount=2600), key=key)
    assert_problem(reused, 422, "idempotency-key-reused")

    if mode == "mismatching-2xx":
        # While Dots keeps misstating the link, no retry can vouch for it: the same 502, never a 201.
        assert_problem(post(api, key=key), 502, "upstream-mismatch")

    retry = post(api, key=key)
    assert retry.status == 201, retry.body
    assert retry.headers["content-type"] == "application/json"
    assert retry.json()["id"] == link_id
    assert retry.json()["amount"] == payout_body()["amount"]
    replay = post(api, key=key)
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.body == retry.body
    assert upstream.stats()["links_created"] == 1


# -- 2. the function dies between Dots' answer and our write ------------------------------------------------


def test_sigkill_between_the_upstream_answer_and_the_write(tmp_path, aws_endpoint, aws_resources, upstream):
    timeout = dedicated_timeout_seconds()
    stack = start_stack(
        tmp_path,
        AWS_ENDPOINT_URL=aws_endpoint,
        PAYOUT_API_BASE_URL=upstream.base_url,
        LOCAL_CONCURRENCY="1",
        LAMBDA_TIMEOUT_SECONDS=str(timeout),
    )
    try:
        (worker_pid,) = stack.worker_pids
        key = new_key()
        upstream.inject({"delay_seconds": 3, "after_create": True})  # made, then the answer is slow to come
        with httpx.Client(base_url=stack.url, timeout=60) as api:
            answers: list[HttpResult] = []
            sent_at = time.monotonic()
            caller = threading.Thread(target=lambda: answers.append(post(api, key=key)))
            caller.start()
            poll(lambda: upstream.stats()["links_created"], lambda count: count == 1, timeout=15, interval=0.02)
            created = time.monotonic()
            os.kill(worker_pid, signal.SIGKILL)
            caller.join(timeout=15)
            assert not caller.is_alive()

            # What API Gateway answers for an invocation that crashed: its own 500, not the function's.
            (crashed,) = answers
            assert crashed.status == 500
            assert crashed.headers["content-type"] == "application/json"
            assert crashed.json() == {"message": "Internal Server Error"}

            # The dead invocation's lock lives for its timeout from its start: it expires no earlier than
            # `sent_at + timeout`, and no later than `created + timeout` (it was taken before Dots was asked).
            # Another body is refused all along, while the lock lives and once it has expired; the same body is
            # in progress until the end of the lock.
            probed_late_in_the_lock = False
            while time.monotonic() < created + timeout + 0.5:
                assert_problem(post(api, payout_body(amount=2600), key=key), 422, "idempotency-key-reused")
                if not probed_late_in_the_lock and time.monotonic() >= sent_at + timeout - 1.5:
                    assert_problem(post(api, key=key), 409, "request-in-progress")
                    probed_late_in_the_lock = True
                time.sleep(0.5)
            assert probed_late_in_the_lock

            # Once the lock has expired, the same body gets the link that exists.
            retry = post(api, key=key)
            assert retry.status == 201, retry.body
            assert retry.json()["id"] == only_link_id(upstream)
            assert_problem(post(api, payout_body(amount=2600), key=key), 422, "idempotency-key-reused")
        assert upstream.stats()["links_created"] == 1
    finally:
        stack.stop()


# -- 3. an upstream that answers one byte at a time ---------------------------------------------------------


def test_trickling_upstream_is_cut_at_the_attempt_budget(api, upstream):
    key = new_key()
    upstream.inject({"trickle_seconds": 0.5, "count": ATTEMPTS})  # ~500 bytes: minutes per answer

    started = time.monotonic()
    first = post(api, key=key)
    elapsed = time.monotonic() - started

    assert_problem(first, 504, "upstream-timeout")
    assert elapsed < ATTEMPTS * ATTEMPT_SECONDS + BACKOFF_SECONDS + 1.5, elapsed
    assert upstream.stats()["requests"] == ATTEMPTS
    link_id = only_link_id(upstream)
    # The emulator trickles on to a client that left until a write fails: at most a byte or two later.
    idle_started = time.monotonic()
    assert upstream.wait_idle(timeout=5)
    assert time.monotonic() - idle_started < 3

    assert_problem(post(api, payout_body(amount=2600), key=key), 422, "idempotency-key-reused")
    retry = post(api, key=key)
    assert retry.status == 201, retry.body
    assert retry.json()["id"] == link_id
    assert upstream.stats()["links_created"] == 1


# -- 4. stalled AWS dependencies ------------------------------------------------------------------------------


STALL_SECONDS = 10.0


@contextmanager
def api_behind_aws_proxy(tmp_path: Path, aws_endpoint: str, upstream) -> Iterator[tuple[httpx.Client, AwsFaultProxy]]:
    """A client of a fresh stack (one cold container) whose every AWS call goes through a fault proxy to the
    session moto."""
    proxy = AwsFaultProxy(aws_endpoint)
    try:
        stack = start_stack(
            tmp_path,
            AWS_ENDPOINT_URL=proxy.endpoint,
            PAYOUT_API_BASE_URL=upstream.base_url,
            LOCAL_CONCURRENCY="1",
            LAMBDA_TIMEOUT_SECONDS=str(dedicated_timeout_seconds()),
        )
        try:
            with httpx.Client(base_url=stack.url, timeout=60) as api:
                yield api, proxy
        finally:
            stack.stop()
    finally:
        proxy.heal()
        proxy.stop()


def test_stalled_completed_write_still_answers_before_the_timeout(tmp_path, aws_endpoint, aws_resources, upstream):
    timeout = dedicated_timeout_seconds()
    with api_behind_aws_proxy(tmp_path, aws_endpoint, upstream) as (api, proxy):
        key = new_key()
        # Dots answers a second before the upstream deadline: the write gets only the time kept back for it.
        upstream.inject({"delay_seconds": timeout - RESPONSE_RESERVE_SECONDS - 1.0})
        # Every attempt botocore makes at the COMPLETED write (with the owner record) waits 10 s, then lands.
        proxy.stall("DynamoDB_20120810.TransactWriteItems", seconds=STALL_SECONDS)

        started = time.monotonic()
        failed = post(api, key=key)
        answered = time.monotonic()
        elapsed = answered - started
        proxy.heal()

        assert_problem(failed, 503, "dependency-unavailable")
        assert "retry-after" in failed.headers
        assert elapsed < timeout, elapsed
        link_id = only_link_id(upstream)

        # "Retry with the same key" holds: another body is refused, the same body gets the one link.
        assert_problem(post(api, payout_body(amount=2600), key=key), 422, "idempotency-key-reused")
        retry = retry_while_in_progress(api, payout_body(), key=key, timeout=timeout + 10)
        assert retry.status == 201, retry.body
        assert retry.json()["id"] == link_id
        # The stalled writes all reached the proxy before the answer, and each is let through STALL_SECONDS after
        # it came: once the proxy is idle, nothing more reaches the session's moto server from this test.
        assert proxy.wait_idle(timeout=STALL_SECONDS + 10)
    assert upstream.stats()["links_created"] == 1


def test_stalled_secret_read_is_a_503_before_the_timeout(tmp_path, aws_endpoint, aws_resources, upstream):
    timeout = dedicated_timeout_seconds()
    with api_behind_aws_proxy(tmp_path, aws_endpoint, upstream) as (api, proxy):
        key = new_key()
        # The cold container has no secret yet. Its reads reach moto at once, their answers come 10 s late (or
        # never: the client is gone by then), so nothing reaches moto once the test is over.
        proxy.stall("secretsmanager.GetSecretValue", seconds=STALL_SECONDS, forward=True)

        started = time.monotonic()
        failed = post(api, key=key)
        elapsed = time.monotonic() - started

        assert_problem(failed, 503, "dependency-unavailable")
        assert elapsed < timeout, elapsed
        assert upstream.stats()["requests"] == 0  # Dots was never asked: the key is released

        proxy.heal()
        retry = post(api, payout_body(amount=2600), key=key)  # released: even a corrected body may use it
        assert retry.status == 201, retry.body
        assert retry.json()["id"] == only_link_id(upstream)


def test_slow_lock_write_that_lands_is_the_requests_own_lock(tmp_path, aws_endpoint, aws_resources, upstream):
    with api_behind_aws_proxy(tmp_path, aws_endpoint, upstream) as (api, proxy):
        key = new_key()
        # The lock lands at once, its answer comes after botocore's 1 s read timeout: botocore sends it again.
        proxy.stall("DynamoDB_20120810.PutItem", seconds=aws.READ_TIMEOUT_SECONDS + 0.5, count=1, forward=True)

        created = post(api, key=key)

        assert created.status == 201, created.body
        assert proxy.calls.count("DynamoDB_20120810.PutItem") == 2  # the retry found the request's own lock
        assert created.json()["id"] == only_link_id(upstream)
        replay = post(api, key=key)
        assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
        assert replay.body == created.body
    assert upstream.stats()["links_created"] == 1


# -- 5. answers the proxy cannot take at face value -----------------------------------------------------------


def test_created_outside_the_calendar_becomes_null(api, upstream):
    key = new_key()
    # Moving this instant to UTC leaves year 1: a time that cannot be written, so not one to vouch for.
    upstream.inject({"link_overrides": {"created": "0001-01-01T00:00:00+01:00"}})

    created = post(api, key=key)

    assert created.status == 201, created.body
    link = created.json()
    assert set(link) == LINK_KEYS
    assert link["created"] is None
    assert link["id"] == only_link_id(upstream)
    replay = post(api, key=key)
    assert replay.status == 201 and replay.body == created.body


def test_deeply_nested_2xx_is_a_502_and_the_retry_gets_the_one_link(api, upstream):
    key = new_key()
    depth = 100_000
    upstream.inject({"status": 201, "raw_body": "[" * depth + "]" * depth, "after_create": True})

    failed = post(api, key=key)

    assert_problem(failed, 502, "upstream-failed")
    link_id = only_link_id(upstream)
    assert_problem(post(api, payout_body(amount=2600), key=key), 422, "idempotency-key-reused")
    retry = post(api, key=key)
    assert retry.status == 201, retry.body
    assert retry.json()["id"] == link_id
    assert upstream.stats()["links_created"] == 1


# -- 6. one UUID, however it is spelled -----------------------------------------------------------------------

SPELLINGS: dict[str, Callable[[uuid.UUID], str]] = {
    "hyphenless": lambda key: key.hex,
    "braced": lambda key: f"{{{key}}}",
    "urn": lambda key: f"urn:uuid:{key}",
    "upper-case": lambda key: str(key).upper(),
}
# Where the key goes in the first and in the second request: the odd spelling in one, the standard in the other.
PLACEMENTS = {
    "odd-header-then-standard-body": (("header", "odd"), ("body", "standard")),
    "standard-body-then-odd-header": (("body", "standard"), ("header", "odd")),
    "odd-body-then-standard-header": (("body", "odd"), ("header", "standard")),
    "standard-header-then-odd-body": (("header", "standard"), ("body", "odd")),
}


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_uuid_key_names_one_intent_in_every_spelling(api, upstream, spelling, placement):
    key = uuid.uuid4()
    spelled = {"odd": SPELLINGS[spelling](key), "standard": str(key)}

    def send(where: str, form: str) -> HttpResult:
        if where == "header":
            return post(api, key=spelled[form])
        return post(api, payout_body(idempotency_key=spelled[form]), key=None)

    first, second = (send(where, form) for where, form in PLACEMENTS[placement])

    assert first.status == 201, first.body
    assert "idempotent-replayed" not in first.headers
    assert second.status == 201, second.body
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["id"] == first.json()["id"] == only_link_id(upstream)
