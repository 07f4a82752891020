"""Settling every intent, through the local stack, as frontends see it: each scenario is driven over HTTP as a
frontend would drive it, the settler is run on demand (the control API, `RunningStack.run_schedule`), and each ends
by counting the links Dots holds: every one is recorded with its owner (readable, listed and cancelable by that
caller alone) or was canceled by the proxy.

Each test is one finding of the issue "settle every intent", and fails on the code from before settling existed
(commit bcefe59, whose settler was a skeleton that settled nothing); its docstring says what that code did.

The stack is this module's own, with its own moto server (so that no other test's intents are in its settle
queue) and the session's emulator; intents are due `SETTLE_AFTER_SECONDS` (1 s) after their lock was dropped, and
waiting that out is the only wait that decides an outcome. Where a caller may get an answer it should retry (409,
503, a 429 from Dots), the test retries as a client would.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from local_stack.core.aws_resources import clients
from local_stack.stack import TABLE_NAME
from payout_links.problems import PROBLEM_TYPE_PREFIX
from tests.conftest import start_stack
from tests.support import (
    HttpResult,
    RunningStack,
    create_until_settled,
    frontend_headers,
    new_key,
    payout_body,
    token,
    wait_until,
)

pytestmark = pytest.mark.e2e

SETTLE_AFTER_SECONDS = 1
API_ATTEMPTS = 3  # PAYOUT_API_MAX_ATTEMPTS of the API's function in the template
RETRYABLE = {409, 429, 503}  # a 429 is Dots' (upstream-rate-limited): the callers' limits are off in this stack


# --- the stack --------------------------------------------------------------------------------------------------


class _Stacks:
    """The module's stack, started on first use and started anew after a test that left it unsettled."""

    def __init__(self, log_dir, upstream_url: str) -> None:
        self.log_dir = log_dir
        self.upstream_url = upstream_url
        self.running: RunningStack | None = None

    def get(self) -> RunningStack:
        if self.running is None:
            self.running = start_stack(
                self.log_dir,
                PAYOUT_API_BASE_URL=self.upstream_url,
                SETTLE_AFTER_SECONDS=str(SETTLE_AFTER_SECONDS),
            )
        return self.running

    def queued(self) -> int:
        """Intents still in the stack's settle queue (locked, unknown or stranded): none once a scenario settled."""
        assert self.running is not None
        found = re.search(r"AWS endpoint: (http://127\.0\.0\.1:\d+)", self.running.banner)
        assert found, self.running.banner
        dynamodb, _ = clients(found.group(1), "us-east-1")
        return sum(
            dynamodb.query(
                TableName=TABLE_NAME,
                IndexName="settle-queue",
                KeyConditionExpression="settle_queue = :partition",
                ExpressionAttributeValues={":partition": {"S": partition}},
                Select="COUNT",
            )["Count"]
            for partition in ("due", "stranded")
        )

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture(scope="module")
def stacks(dots, tmp_path_factory) -> Iterator[_Stacks]:
    started = _Stacks(tmp_path_factory.mktemp("settling-stack"), dots.base_url)
    yield started
    started.stop()


@pytest.fixture
def stack(stacks: _Stacks, upstream) -> Iterator[RunningStack]:
    yield stacks.get()
    left = stacks.queued()
    if left:
        stacks.stop()  # the next test gets a stack of its own
        raise AssertionError(f"{left} intents left unsettled in the stack")


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client


# --- a frontend ------------------------------------------------------------------------------------------------


def result(response: httpx.Response) -> HttpResult:
    return HttpResult(response.status_code, dict(response.headers), response.content)


def bearer(sub: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub)}"}


def post(api: httpx.Client, body: dict[str, Any] | None = None, *, key: str, sub: str) -> HttpResult:
    """One POST /payout-links, answered as it comes."""
    answer = api.post(
        "/payout-links", json=payout_body() if body is None else body, headers=frontend_headers(key=key, sub=sub)
    )
    return result(answer)


def create(api: httpx.Client, body: dict[str, Any] | None = None, *, key: str, sub: str) -> HttpResult:
    """POST /payout-links as a client that retries what load may cause (409, 503, a 429 from Dots) with the same key
    and body after Retry-After, until it gets another answer (tests/support.py `create_until_settled`). A 502 or
    504 with a bound key, which these tests are about, is kept."""
    answer, _ = create_until_settled(api, body, key=key, sub=sub, attempts=20, retry_on=RETRYABLE, cap=2)
    return result(answer)


def read(api: httpx.Client, link_id: str, sub: str) -> HttpResult:
    return result(api.get(f"/payout-links/{link_id}", headers=bearer(sub)))


def cancel(api: httpx.Client, link_id: str, sub: str) -> HttpResult:
    return result(api.delete(f"/payout-links/{link_id}", headers=bearer(sub)))


def listed(api: httpx.Client, sub: str) -> list[str]:
    """The ids of every link GET /payout-links lists for `sub`, every page."""
    ids: list[str] = []
    query: dict[str, str] = {"limit": "100"}
    while True:
        answer = api.get("/payout-links", headers=bearer(sub), params=query)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return ids
        query = {"limit": "100", "cursor": page["next_cursor"]}


def problem_type(answer: HttpResult) -> str:
    assert answer.is_problem(), (answer.status, answer.headers, answer.body)
    return answer.json()["type"].removeprefix(PROBLEM_TYPE_PREFIX)


def caller() -> str:
    return f"user-{new_key()}"


# --- the settler -----------------------------------------------------------------------------------------------


def settle(stack: RunningStack, done: Callable[[], bool] | None = None, *, timeout: float = 60) -> list[dict]:
    """Run the settler as its schedule would, each run once SETTLE_AFTER_SECONDS has passed (the design: an intent is
    due that long after its lock was dropped); again while `done()` is false (an intent whose resend was unknown
    again waits out its backoff, one its caller still held was not due yet). The runs' reports."""
    reports = []
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(SETTLE_AFTER_SECONDS + 0.1)
        reports.append(stack.run_schedule("SettlerFunction"))
        if done is None or done():
            return reports
        assert time.monotonic() < deadline, f"not settled after {len(reports)} runs: {reports}"


def total(reports: list[dict], name: str) -> int:
    return sum(report[name] for report in reports)


def assert_nothing_left_to_settle(stack: RunningStack) -> None:
    (report,) = settle(stack)
    assert report["due"] == 0 and report["stranded"] == 0, report


def assert_every_link_owned_or_canceled(api: httpx.Client, upstream, callers: list[str]) -> dict[str, list[str]]:
    """Every link Dots holds is either canceled (only the proxy cancels at the emulator) or recorded for exactly one
    of `callers`: readable by it and by no one else, listed for it, and cancelable by it (each such link is canceled
    by its owner last). The live links by owner."""
    owned: dict[str, list[str]] = {sub: [] for sub in callers}
    links = upstream.links()
    assert not [link for link in links if link["seeded"] or link["idempotency_key"] is None], links
    for link in links:
        if link["status"] == "canceled":
            continue
        readers = [sub for sub in callers if read(api, link["id"], sub).status == 200]
        assert len(readers) == 1, f"link {link['id']} is readable by {readers}"
        owned[readers[0]].append(link["id"])
    for sub, ids in owned.items():
        # The list is read from an index DynamoDB keeps eventually consistent.
        wait_until(lambda sub=sub, ids=ids: set(ids) <= set(listed(api, sub)), timeout=10)
        for link_id in ids:
            canceled = cancel(api, link_id, sub)
            assert canceled.status == 200 and canceled.json()["status"] == "canceled", canceled.body
    return owned


# --- the findings ---------------------------------------------------------------------------------------------


def test_a_link_dots_made_while_answering_500_is_owned_once_the_settler_ran(stack, api, upstream):
    """Dots makes the link and answers 500, on every attempt; the caller gets 502 (bound) and never retries. The
    settler resends the intent under its derived key, gets that link, and records it with its owner: it reads,
    lists and cancels like any link, and the caller's late retry replays it without asking Dots.

    Before (bcefe59): the 502 said nothing of the key, and the intent stayed unknown until its record expired: the
    link existed at Dots with no owner (GET 404, never cancelable through the proxy; there was no list yet)."""
    sub, key = caller(), new_key()
    upstream.inject({"status": 500, "after_create": True, "count": API_ATTEMPTS})

    lost = create(api, key=key, sub=sub)

    assert lost.status == 502 and problem_type(lost) == "upstream-failed"
    assert lost.json()["key_state"] == "bound"
    assert upstream.stats()["creates"] == API_ATTEMPTS  # every fault used up by the caller's attempts
    (made,) = upstream.links()
    assert read(api, made["id"], sub).status == 404  # not the caller's yet: its create never completed

    reports = settle(stack, lambda: read(api, made["id"], sub).status == 200)

    assert total(reports, "settled") == 1 and total(reports, "resent") == total(reports, "settled"), reports
    got = read(api, made["id"], sub)
    assert got.status == 200 and got.json()["id"] == made["id"]
    wait_until(lambda: made["id"] in listed(api, sub), timeout=10)
    requests = upstream.stats()["requests"]
    late = create(api, key=key, sub=sub)
    assert late.status == 201 and late.headers["idempotent-replayed"] == "true"
    assert late.json()["id"] == made["id"]
    assert upstream.stats()["requests"] == requests  # a replay: Dots is not asked
    canceled = cancel(api, made["id"], sub)
    assert canceled.status == 200 and canceled.json()["status"] == "canceled"
    assert [link["id"] for link in upstream.links()] == [made["id"]]
    assert upstream.stats()["links_created"] == 1
    assert_nothing_left_to_settle(stack)


def test_a_country_code_dots_echoes_without_its_leading_zero_is_no_mismatch(stack, api, upstream):
    """The request sends payee.country_code "01"; Dots echoes "1" (in the payee and in the delivery it merges with
    it). The link is the request's: 201, owned, and nothing is canceled.

    Before (bcefe59): country codes were compared as digit strings, "01" against "1": a 502 upstream-mismatch, the
    key bound, and the link left live at Dots with no owner."""
    sub, key = caller(), new_key()
    body = payout_body(payee={**payout_body()["payee"], "country_code": "01"})
    echoed_payee = {**body["payee"], "country_code": "1"}
    echoed_delivery = {
        "method": "sms",
        "email": body["payee"]["email"],
        "country_code": "1",
        "phone_number": body["payee"]["phone_number"],
    }
    upstream.inject({"link_overrides": {"payee": echoed_payee, "delivery": echoed_delivery}})

    created = create(api, body, key=key, sub=sub)

    assert created.status == 201, created.body
    assert created.json()["payee"]["country_code"] == "1"
    assert upstream.stats()["cancels"] == 0
    owned = assert_every_link_owned_or_canceled(api, upstream, [sub])
    assert owned == {sub: [created.json()["id"]]}
    assert_nothing_left_to_settle(stack)


def test_a_link_that_does_not_match_is_canceled_and_never_leaves_two_live_links(stack, api, upstream):
    """Dots makes the link and answers it with another amount: 502 upstream-mismatch with the key spent, and the
    link canceled at Dots. The same key and body get the same 502 without Dots; the caller's new key makes the one
    live link. Dots ends with one live link and one canceled, never two live.

    Before (bcefe59): the 502 kept the key bound and the mismatched link live at Dots, unowned; the caller's new key
    made a second live link for the same payout."""
    sub, key = caller(), new_key()
    upstream.inject({"link_overrides": {"amount": 1.0}})

    mismatch = create(api, key=key, sub=sub)

    assert mismatch.status == 502 and problem_type(mismatch) == "upstream-mismatch"
    assert mismatch.json()["key_state"] == "spent"
    (mismatched,) = upstream.links()
    assert mismatched["status"] == "canceled"
    requests = upstream.stats()["requests"]
    again = create(api, key=key, sub=sub)
    assert again.status == 502 and again.json()["key_state"] == "spent"
    assert upstream.stats()["requests"] == requests  # a spent key never reaches Dots again

    anew = create(api, key=new_key(), sub=sub)

    assert anew.status == 201 and anew.json()["id"] != mismatched["id"]
    statuses = sorted(link["status"] for link in upstream.links())
    assert statuses == ["canceled", "created"], upstream.links()
    assert_nothing_left_to_settle(stack)
    owned = assert_every_link_owned_or_canceled(api, upstream, [sub])
    assert owned == {sub: [anew.json()["id"]]}


def test_dots_answering_with_another_callers_link_is_a_conflict_that_spends_the_key(stack, api, upstream):
    """Caller A creates a link; Dots then answers caller B's create (the same body, B's own key) with A's link.
    B gets 502 upstream-link-conflict, not to be retried (no Retry-After, key spent); B's retry gets the same 502
    without Dots; A's link stays A's alone (B cannot read it, B lists nothing), and nothing was canceled.

    Before (bcefe59): the owner record's condition failed inside the completing transaction, which was answered as
    a store failure: 503 with Retry-After and the key bound, so B's retry went to Dots again (and, once Dots
    behaved, got a link of its own for the same key after the 503s)."""
    alice, bob = caller(), caller()
    first = create(api, key=new_key(), sub=alice)
    assert first.status == 201
    link_id = first.json()["id"]
    upstream.inject({"answer_link": link_id})
    key = new_key()

    conflict = create(api, key=key, sub=bob)

    assert conflict.status == 502 and problem_type(conflict) == "upstream-link-conflict"
    assert conflict.json()["key_state"] == "spent"
    assert "retry-after" not in conflict.headers
    requests = upstream.stats()["requests"]
    retried = create(api, key=key, sub=bob)
    assert retried.status == 502 and problem_type(retried) == "upstream-link-conflict"
    assert retried.json()["key_state"] == "spent"
    assert upstream.stats()["requests"] == requests
    assert read(api, link_id, bob).status == 404
    assert listed(api, bob) == []
    assert upstream.stats()["cancels"] == 0
    assert_nothing_left_to_settle(stack)
    owned = assert_every_link_owned_or_canceled(api, upstream, [alice, bob])
    assert owned == {alice: [link_id], bob: []}


def test_every_create_problem_that_reached_the_lock_says_where_the_key_stands(stack, api, upstream):
    """key_state on each problem of a create that reached its key's lock: a 502 upstream-failed after an unknown
    outcome is bound (and the settler records its link), a 422 upstream-rejected is released (another body may use
    the key), a 409 while another request of the key is in flight is bound (and retrying it gets that link).

    Before (bcefe59): no problem carried key_state; a frontend could not tell a key it may reuse from one it must
    not."""
    sub = caller()
    # 502 after an unknown outcome: bound.
    bound_key = new_key()
    upstream.inject({"status": 500, "after_create": True, "count": API_ATTEMPTS})
    failed = create(api, key=bound_key, sub=sub)
    assert failed.status == 502 and problem_type(failed) == "upstream-failed"
    assert failed.json()["key_state"] == "bound"
    (unknown,) = upstream.links()

    # 422 upstream-rejected: released, for any body.
    released_key = new_key()
    upstream.inject({"status": 422})
    rejected = create(api, key=released_key, sub=sub)
    assert rejected.status == 422 and problem_type(rejected) == "upstream-rejected"
    assert rejected.json()["key_state"] == "released"
    corrected = create(api, payout_body(amount=2600), key=released_key, sub=sub)
    assert corrected.status == 201 and corrected.json()["amount"] == 2600

    # 409 while the first request of the key is in flight at Dots: bound.
    busy_key = new_key()
    creates = upstream.stats()["creates"]
    upstream.inject({"delay_seconds": 4, "after_create": True})  # made, then answered 4 s later
    answers: list[HttpResult] = []
    # The first request's answer once settled, as its client would take it: it runs while another one is sent.
    first = threading.Thread(target=lambda: answers.append(result(create_until_settled(api, key=busy_key, sub=sub)[0])))
    first.start()
    try:
        wait_until(lambda: upstream.stats()["creates"] > creates, timeout=30)  # it holds the lock
        in_progress = post(api, key=busy_key, sub=sub)
    finally:
        first.join(timeout=60)
    assert in_progress.status == 409 and problem_type(in_progress) == "request-in-progress"
    assert in_progress.json()["key_state"] == "bound"
    assert int(in_progress.headers["retry-after"]) >= 1
    (made,) = answers
    assert made.status == 201
    retried = create(api, key=busy_key, sub=sub)
    assert retried.status == 201 and retried.json()["id"] == made.json()["id"]

    reports = settle(stack, lambda: read(api, unknown["id"], sub).status == 200)
    assert total(reports, "settled") == 1, reports
    assert_nothing_left_to_settle(stack)
    owned = assert_every_link_owned_or_canceled(api, upstream, [sub])
    assert sorted(owned[sub]) == sorted([unknown["id"], corrected.json()["id"], made.json()["id"]])


def test_a_frontend_whose_tab_closed_finds_its_link_listed_once_the_settler_ran(stack, api, upstream):
    """The tab sends the create and closes before any answer; Dots made the link and answered 500 to every attempt,
    so the create ended unknown and nobody retries. Once the settler has run, the frontend (a new tab, same user)
    finds the link in GET /payout-links and can read it.

    Before (bcefe59): there was no list to look in, and the link was never recorded for anyone."""
    sub, key = caller(), new_key()
    upstream.inject({"status": 500, "after_create": True, "delay_seconds": 0.5, "count": API_ATTEMPTS})

    with pytest.raises(httpx.TimeoutException):  # the tab closed: the answer is never read
        api.post("/payout-links", json=payout_body(), headers=frontend_headers(key=key, sub=sub), timeout=0.3)
    wait_until(lambda: upstream.stats()["creates"] == API_ATTEMPTS, timeout=30)
    assert upstream.wait_idle()
    (made,) = upstream.links()

    reports = settle(stack, lambda: made["id"] in listed(api, sub))

    assert total(reports, "settled") == 1, reports
    assert read(api, made["id"], sub).status == 200
    assert_nothing_left_to_settle(stack)
    assert assert_every_link_owned_or_canceled(api, upstream, [sub]) == {sub: [made["id"]]}


def test_the_documented_recipe_for_a_bound_key_never_leaves_two_live_links(stack, api, upstream):
    """Dots made the link but its answer was lost (502, bound); the user edits the amount, and the form keeps its
    key: 422 idempotency-key-reused, still bound. The recipe (retry the same key and body until a definite answer;
    to change the payout, cancel that link, then create with a new key): the same body gets the link, the caller
    cancels it, and a new key with the new amount makes the one live link. Dots ends with one live and one canceled.

    Before (bcefe59): the recipe worked the same, but neither problem said the key was bound, so a frontend had no
    way to know it had to follow it rather than send the edited payout under a new key (two live links)."""
    sub, key = caller(), new_key()
    upstream.inject({"drop": True, "after_create": True, "count": API_ATTEMPTS})

    lost = create(api, key=key, sub=sub)
    assert lost.status == 502 and lost.json()["key_state"] == "bound"
    edited = create(api, payout_body(amount=2600), key=key, sub=sub)
    assert edited.status == 422 and problem_type(edited) == "idempotency-key-reused"
    assert edited.json()["key_state"] == "bound"

    same = create(api, key=key, sub=sub)
    assert same.status == 201, same.body
    (made,) = upstream.links()
    assert same.json()["id"] == made["id"]
    canceled = cancel(api, made["id"], sub)
    assert canceled.status == 200 and canceled.json()["status"] == "canceled"
    anew = create(api, payout_body(amount=2600), key=new_key(), sub=sub)
    assert anew.status == 201 and anew.json()["amount"] == 2600

    assert sorted(link["status"] for link in upstream.links()) == ["canceled", "created"]
    assert_nothing_left_to_settle(stack)
    assert assert_every_link_owned_or_canceled(api, upstream, [sub]) == {sub: [anew.json()["id"]]}
