"""The callers' limits through the local stack over HTTP, as frontends and partners meet them: a stack whose
callers may pay out 10,000 cents per UTC day and create 5 links per UTC hour, with its own moto server (so that
its partner and its counters are its own) and the session's Dots emulator (so that a test can count the links Dots
holds). What each reserve and give-back writes is tests/integration/test_limit_counters.py's; here: the 429 a
caller gets, that Dots is never asked for a refused create, what a Dots refusal or an unknown outcome does to
the room a caller has left, replays and other callers, a partner's webhooks, and an operator's override.

Every create is sent as a client would send it: answered 409 or 503, it is sent again with the same key and body
(after a short pause), so that a busy machine changes how long a test takes, never what it finds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from local_stack.stack import TABLE_NAME
from tests.conftest import start_stack
from tests.support import (
    ROOT,
    HttpResult,
    clear_of_window_end,
    frontend_headers,
    new_key,
    new_webhook_id,
    partner_event,
    payout_body,
    send_until_settled,
    signed_webhook,
    webhook_secret,
)

pytestmark = pytest.mark.e2e

DAILY_AMOUNT_CENTS = 10_000
HOURLY_LINKS = 5
LIMITS = {
    "CALLER_DAILY_AMOUNT_LIMIT_CENTS": str(DAILY_AMOUNT_CENTS),
    "CALLER_HOURLY_LINK_LIMIT": str(HOURLY_LINKS),
    # An override applies within a second, rather than the minute each container keeps its copy by default.
    "LIMIT_OVERRIDES_MAX_AGE_SECONDS": "1",
}
# A partner of this stack alone: its counters are nobody else's.
PARTNER = f"limited-{uuid.uuid4().hex[:12]}"
PARTNER_SECRET = webhook_secret(f"{PARTNER}-test-secret-not-real")
LIMIT_EXCEEDED = "urn:payout-link-proxy:problem:limit-exceeded"
RETRYABLE = {409, 503}


@pytest.fixture(scope="module")
def limited_stack(dots, tmp_path_factory):
    running = start_stack(
        tmp_path_factory.mktemp("limited-stack"),
        PAYOUT_API_BASE_URL=dots.base_url,
        PARTNER_WEBHOOK_SECRETS=json.dumps({PARTNER: PARTNER_SECRET}),
        **LIMITS,
    )
    yield running
    running.stop()


@pytest.fixture
def api(limited_stack, upstream):
    # Each test counts against the current UTC hour and day: it starts with a minute of them left at least.
    clear_of_window_end(60)
    with httpx.Client(base_url=limited_stack.url, timeout=60) as client:
        yield client


def aws_endpoint(stack) -> str:
    """The stack's own moto server, as its banner names it (what an operator gives `make limits`)."""
    line = next(line for line in stack.banner.splitlines() if line.strip().startswith("AWS endpoint:"))
    return line.split(":", 1)[1].strip()


def new_user() -> str:
    return f"limits-{uuid.uuid4().hex}"


@dataclass
class Answer(HttpResult):
    sent_at: float = 0.0  # Unix time just before the request that got this answer was sent


def as_a_client(send) -> Answer:
    """`send()` (an httpx.Response), sent again while the answer is 409 (the key is in flight) or 503 (the gateway
    or a dependency was too slow), for up to about 90 s: what a client does with the same key and body
    (tests/support.py `send_until_settled`). Any other answer is final: the 429s and the 502 these tests are about."""
    sent_at = 0.0

    def timed() -> httpx.Response:
        nonlocal sent_at
        sent_at = time.time()
        return send()

    response, _ = send_until_settled(timed, attempts=180, retry_on=RETRYABLE, cap=0.5)
    return Answer(response.status_code, dict(response.headers), response.content, sent_at=sent_at)


def create(api: httpx.Client, sub: str, amount: int, *, key: str | None = None) -> Answer:
    """POST /payout-links as frontend user `sub`, for `amount` cents, as a client sends it."""
    headers = frontend_headers(key=key or new_key(), sub=sub)
    body = payout_body(amount=amount)
    return as_a_client(lambda: api.post("/payout-links", json=body, headers=headers))


def deliver(api: httpx.Client, amount: int, *, webhook_id: str | None = None) -> Answer:
    """A partner's `payout_link.create` event for `amount` cents (a fresh delivery, or a redelivery of
    `webhook_id`), signed anew for each attempt as a partner's webhook sender does."""
    webhook_id = webhook_id or new_webhook_id()
    event = partner_event(payout_body(amount=amount))

    def send() -> httpx.Response:
        request = signed_webhook(event, partner=PARTNER, secret=PARTNER_SECRET, webhook_id=webhook_id)
        return api.post(request.path, content=request.body, headers=request.headers)

    return as_a_client(send)


def caller_limits(stack, *arguments: str) -> dict:
    """`make limits ARGS="..."` (scripts/caller_limits.py) against the stack's moto server; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "scripts/caller_limits.py", *arguments],
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL": aws_endpoint(stack), "IDEMPOTENCY_TABLE_NAME": TABLE_NAME},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def used(stack, caller: str) -> tuple[int, int]:
    """What `caller` has used of its current UTC day (cents) and hour (links), as `make limits show` tells it."""
    usage = caller_limits(stack, "show", "--caller", caller)["usage"]
    return usage["daily-amount"]["amount"], usage["hourly-links"]["links"]


def assert_refused(result: Answer, limit: str, window_seconds: int) -> None:
    """The caller's own limit refused the create: 429 limit-exceeded naming `limit`, Retry-After the seconds until
    its window ends (at most those left when the request was sent), the key released."""
    assert result.status == 429 and result.is_problem(), result.body
    problem = result.json()
    assert problem["type"] == LIMIT_EXCEEDED
    assert problem["limit"] == limit
    assert problem["key_state"] == "released"
    assert 0 < int(result.headers["retry-after"]) <= math.ceil(window_seconds - result.sent_at % window_seconds)


def link_ids(results: list[HttpResult]) -> set[str]:
    return {result.json()["id"] for result in results}


def dots_links(upstream) -> dict[str, int]:
    """Every link Dots holds (the emulator is reset for each test), by id, with its amount in cents."""
    return {link["id"]: int(upstream.link(link["id"])["amount"]) for link in upstream.links()}


def test_the_fourth_create_of_3000_is_refused_with_dots_untouched_and_a_1000_still_fits(api, upstream):
    user, other = new_user(), new_user()
    first_key = new_key()
    made = [create(api, user, 3_000, key=first_key), create(api, user, 3_000), create(api, user, 3_000)]
    assert [result.status for result in made] == [201, 201, 201], [result.body for result in made]
    calls = upstream.stats()["requests"]

    refused_key = new_key()
    refused = create(api, user, 3_000, key=refused_key)

    assert_refused(refused, "daily-amount", 86_400)
    assert upstream.stats()["requests"] == calls  # Dots never asked
    # Nothing is recorded against the refused key: it takes another body at once, one that fits.
    fits = create(api, user, 1_000, key=refused_key)
    assert fits.status == 201, fits.body
    assert fits.json()["amount"] == 1_000
    # Another caller has its own limits.
    elsewhere = create(api, other, 3_000)
    assert elsewhere.status == 201, elsewhere.body
    # A replay reserves nothing, and the caller at its limit still gets it.
    replayed = create(api, user, 3_000, key=first_key)
    assert replayed.status == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == made[0].json()
    assert_refused(create(api, user, 1), "daily-amount", 86_400)  # a cent more is too much

    links = dots_links(upstream)
    assert set(links) == link_ids([*made, fits, elsewhere])
    assert sum(links[link_id] for link_id in link_ids([*made, fits])) == DAILY_AMOUNT_CENTS


def test_twenty_concurrent_creates_of_3000_make_three_links(api, upstream, limited_stack):
    user = new_user()

    with ThreadPoolExecutor(max_workers=20) as callers:
        results = list(callers.map(lambda _: create(api, user, 3_000), range(20)))

    statuses = sorted(result.status for result in results)
    assert statuses == [201] * 3 + [429] * 17, [result.body for result in results]
    for result in results:
        if result.status == 429:
            assert_refused(result, "daily-amount", 86_400)
    created = [result for result in results if result.status == 201]
    links = dots_links(upstream)
    assert set(links) == link_ids(created)
    assert sum(links.values()) == 9_000
    assert used(limited_stack, f"user:{user}") == (9_000, 3)


def test_the_sixth_link_in_the_hour_is_refused(api, upstream):
    user = new_user()
    for _ in range(HOURLY_LINKS):
        made = create(api, user, 100)
        assert made.status == 201, made.body
    calls = upstream.stats()["requests"]

    refused = create(api, user, 100)

    assert_refused(refused, "hourly-links", 3_600)
    assert upstream.stats()["requests"] == calls
    assert len(upstream.links()) == HOURLY_LINKS


@pytest.mark.parametrize(
    ("fault", "status", "slug"),
    [
        ({"status": 429, "retry_after": "3"}, 429, "upstream-rate-limited"),
        ({"status": 422}, 422, "upstream-rejected"),
    ],
    ids=["dots-429", "dots-422"],
)
def test_a_create_dots_refuses_gives_its_reservation_back(api, upstream, limited_stack, fault, status, slug):
    user = new_user()
    for _ in range(2):
        assert create(api, user, 3_000).status == 201
    upstream.inject(fault)

    refused = create(api, user, 4_000)

    assert refused.status == status and refused.is_problem(), refused.body
    assert refused.json()["type"] == f"urn:payout-link-proxy:problem:{slug}"
    assert refused.json()["key_state"] == "released"
    assert used(limited_stack, f"user:{user}") == (6_000, 2)
    # The room it held is free again: 6,000 + 4,000 fits exactly, as it would not have beside a kept 4,000.
    fits = create(api, user, 4_000)
    assert fits.status == 201, fits.body
    assert sum(dots_links(upstream).values()) == DAILY_AMOUNT_CENTS


def test_a_create_whose_outcome_is_unknown_keeps_its_reservation(api, upstream, limited_stack):
    user = new_user()
    for _ in range(2):
        assert create(api, user, 3_000).status == 201
    unknown_key = new_key()
    # Dots makes the link, and every attempt's answer is lost.
    upstream.inject({"status": 500, "after_create": True, "count": 3})

    unknown = create(api, user, 4_000, key=unknown_key)

    assert unknown.status == 502 and unknown.is_problem(), unknown.body
    assert unknown.json()["key_state"] == "bound"
    assert used(limited_stack, f"user:{user}") == (10_000, 3)
    assert_refused(create(api, user, 4_000), "daily-amount", 86_400)  # its room is still held
    # The caller's retry takes the intent over with the reservation it already has, and gets the link Dots made.
    retried = create(api, user, 4_000, key=unknown_key)
    assert retried.status == 201, retried.body
    assert used(limited_stack, f"user:{user}") == (10_000, 3)
    links = dots_links(upstream)
    assert len(links) == 3 and sum(links.values()) == DAILY_AMOUNT_CENTS
    assert retried.json()["id"] in links


def test_an_override_raises_a_limit_and_the_refused_key_then_makes_its_link(api, upstream, limited_stack):
    user = new_user()
    caller = f"user:{user}"
    for _ in range(3):
        assert create(api, user, 3_000).status == 201
    key = new_key()
    assert_refused(create(api, user, 3_000, key=key), "daily-amount", 86_400)

    assert caller_limits(limited_stack, "set", "--caller", caller, "--daily-amount-cents", "20000") == {
        "caller": caller,
        "override": {"daily_amount_cents": 20_000},
    }
    # Each container applies the override once its copy of the overrides is a second old: until then the same
    # request is refused again, and reserves nothing.
    deadline = time.monotonic() + 30
    while (retried := create(api, user, 3_000, key=key)).status == 429:
        assert retried.json()["type"] == LIMIT_EXCEEDED and time.monotonic() < deadline, retried.body
        time.sleep(0.3)

    assert retried.status == 201, retried.body
    assert used(limited_stack, caller) == (12_000, 4)
    assert sum(dots_links(upstream).values()) == 12_000
    caller_limits(limited_stack, "remove", "--caller", caller)


def test_a_partners_webhooks_are_held_to_its_limits(api, upstream, limited_stack):
    """The partner's key is the delivery's webhook-id: a redelivery is a replay, and a refused delivery is
    delivered again, as partners' senders retry, until there is room for it."""
    caller = f"partner:{PARTNER}"
    first_id = new_webhook_id()
    made = [deliver(api, 3_000, webhook_id=first_id), deliver(api, 3_000), deliver(api, 3_000)]
    assert [result.status for result in made] == [201, 201, 201], [result.body for result in made]
    calls = upstream.stats()["requests"]

    refused_id = new_webhook_id()
    refused = deliver(api, 3_000, webhook_id=refused_id)

    assert_refused(refused, "daily-amount", 86_400)
    assert upstream.stats()["requests"] == calls
    again = deliver(api, 3_000, webhook_id=first_id)
    assert again.status == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == made[0].json()
    fits = deliver(api, 1_000)
    assert fits.status == 201, fits.body
    assert used(limited_stack, caller) == (10_000, 4)

    caller_limits(limited_stack, "set", "--caller", caller, "--daily-amount-cents", "20000")
    deadline = time.monotonic() + 30
    while (redelivered := deliver(api, 3_000, webhook_id=refused_id)).status == 429:
        assert redelivered.json()["limit"] == "daily-amount" and time.monotonic() < deadline, redelivered.body
        time.sleep(0.3)
    assert redelivered.status == 201, redelivered.body
    # That was its fifth link this hour: the sixth is refused by the hourly limit, which the override left alone.
    assert_refused(deliver(api, 100), "hourly-links", 3_600)

    links = dots_links(upstream)
    assert set(links) == link_ids([*made, fits, redelivered])
    assert sum(links.values()) == 13_000
    assert used(limited_stack, caller) == (13_000, 5)
    caller_limits(limited_stack, "remove", "--caller", caller)
