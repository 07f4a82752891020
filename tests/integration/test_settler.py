"""The settler, in-process against moto and the Dots emulator: every intent whose caller never came back reaches
a final state, and the settler touches nothing else.

Each test has an idempotency table of its own (`own_intent_table`), so that the settler's queue holds its intents
alone. Intents are due SETTLE_AFTER_SECONDS (1 s) after their lock was dropped; waiting that out (or an intent's
backoff, or a crashed request's lock) is the only wait that decides an outcome. The races between the settler and
a caller's retry are tests/faults/test_settler_races.py's; a backlog of a thousand left by an outage,
tests/faults/test_settler_backlog.py's (outside the fast loop: it takes about 40 s)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from payout_links.intent import record_id
from payout_links.store import STRAND_MARGIN_SECONDS, STRANDED_RETENTION_SECONDS, IntentStore
from tests.support import BUDGET, function_logs, new_key, payout_body, token, wait_until

pytestmark = pytest.mark.integration

ATTEMPT_SECONDS = 1


@pytest.fixture
def settling(function, own_intent_table):
    # Due as soon as the caller's lock is dropped; one attempt per request, so a fault is used up at once.
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    return function


def wait_due(seconds: float = 1.1) -> None:
    time.sleep(seconds)  # SETTLE_AFTER_SECONDS: what the settler waits for by design


def wait_until_due(settle_at: int) -> None:
    """Wait out an intent's due time (a backoff, or a crashed request's lock and SETTLE_AFTER_SECONDS): the design."""
    time.sleep(max(0.0, settle_at - time.time()) + 0.05)


def record(aws_clients, table: str, key: str, sub: str = "user-1") -> dict[str, Any] | None:
    dynamodb, _ = aws_clients
    return dynamodb.get_item(
        TableName=table, Key={"id": {"S": record_id(f"user:{sub}", key)}}, ConsistentRead=True
    ).get("Item")


def read(function, link_id: str, sub: str = "user-1"):
    return function.request("GET", f"/payout-links/{link_id}", headers={"authorization": f"Bearer {token(sub)}"})


def test_a_caller_that_never_retries_gets_its_link_recorded_by_the_settler(settling, upstream):
    key = new_key()
    upstream.inject({"status": 500, "after_create": True})

    lost = settling.create(key=key)
    assert lost.status == 502 and lost.json()["key_state"] == "bound"
    (link,) = upstream.links()
    wait_due()

    report = settling.settle()

    assert report["settled"] == 1, report
    replay = settling.create(key=key)
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == link["id"]
    assert read(settling, link["id"]).status == 200
    assert settling.settle()["due"] == 0


def test_the_settler_never_touches_a_completed_or_released_intent_nor_a_live_lock(
    settling, upstream, aws_clients, own_intent_table
):
    """A completed intent, a released one, and a create in flight at Dots (its lock live): a run finds nothing due
    and sends Dots nothing, and each record is as it was."""
    completed_key, released_key, busy_key = new_key(), new_key(), new_key()
    assert settling.create(key=completed_key).status == 201
    upstream.inject({"status": 422})
    assert settling.create(key=released_key).json()["key_state"] == "released"
    completed_before = record(aws_clients, own_intent_table, completed_key)
    upstream.inject({"delay_seconds": 4})  # the create is at Dots, its lock held, for 4 s
    requests = upstream.stats()["requests"]
    answers: list = []
    busy = threading.Thread(target=lambda: answers.append(settling.create(key=busy_key)))
    busy.start()
    try:
        wait_until(lambda: upstream.stats()["requests"] > requests, timeout=10)
        wait_due()  # an intent dropped unknown meanwhile would be due by now
        in_flight = upstream.stats()["requests"]

        report = settling.settle()

        assert busy.is_alive(), "the create in flight ended before the run: make Dots slower"
        assert report["due"] == 0 and report["resent"] == 0, report
        assert upstream.stats()["requests"] == in_flight  # the run sent Dots nothing
    finally:
        busy.join(timeout=30)
    (answer,) = answers
    assert answer.status == 201
    assert record(aws_clients, own_intent_table, completed_key) == completed_before
    assert record(aws_clients, own_intent_table, released_key) is None
    assert record(aws_clients, own_intent_table, busy_key)["status"]["S"] == "COMPLETED"
    assert settling.settle()["due"] == 0


@pytest.mark.parametrize("status", [400, 422])
def test_a_refusal_at_resend_releases_the_key_for_any_body(settling, upstream, aws_clients, own_intent_table, status):
    """The caller's create ended unknown (a 500 before Dots made anything); the settler's resend is refused: Dots
    judged the request under its derived key, so no link exists under it, and the key is released (its record
    deleted) for any body."""
    key = new_key()
    upstream.inject({"status": 500})
    assert settling.create(key=key).json()["key_state"] == "bound"
    assert upstream.links() == []
    wait_due()
    upstream.inject({"status": status})

    report = settling.settle()

    assert (report["resent"], report["released"], report["halted"]) == (1, 1, False), report
    assert record(aws_clients, own_intent_table, key) is None
    corrected = settling.create(payout_body(amount=2600), key=key)
    assert corrected.status == 201 and corrected.json()["amount"] == 2600
    assert upstream.stats()["links_created"] == 1
    assert settling.settle()["due"] == 0


def test_an_intent_still_unknown_backs_off_and_is_stranded_near_its_record_expiry(
    settling, upstream, aws_clients, own_intent_table
):
    """Each resend that ends unknown again moves the intent's due time SETTLE_AFTER_SECONDS * 2^(attempts + 1)
    ahead and counts the attempt; once that would leave less than STRAND_MARGIN_SECONDS before the record expires,
    the intent is stranded instead: out of the due queue, kept 30 days longer, one ERROR line, and counted by every
    run. Its caller's retry still settles it.

    The record's expiry is written directly (IDEMPOTENCY_TTL_SECONDS is at least 60 s, and a take-over keeps a
    record STRAND_MARGIN_SECONDS past its lock): as if the intent were nearly 24 hours old. The second resend runs
    with SETTLE_AFTER_SECONDS at 30 s, so that its backoff (120 s) reaches into the margin."""
    dynamodb, _ = aws_clients
    settling.set_env(PAYOUT_API_TIMEOUT_SECONDS=str(ATTEMPT_SECONDS))
    key = new_key()
    upstream.inject({"status": 500, "after_create": True})
    assert settling.create(key=key).json()["key_state"] == "bound"
    (link,) = upstream.links()
    wait_due()

    upstream.inject({"status": 500})
    sent_at = time.time()
    first = settling.settle()

    assert (first["resent"], first["unknown"], first["halted"]) == (1, 1, True), first
    backed_off = record(aws_clients, own_intent_table, key)
    assert backed_off["settle_queue"]["S"] == "due" and backed_off["settle_attempts"]["N"] == "1"
    settle_at = int(backed_off["settle_at"]["N"])
    assert int(sent_at + 2) <= settle_at <= int(time.time() + 2)  # 1 s * 2^(0 + 1)
    assert settling.settle()["due"] == 0  # not due before its backoff is over

    settling.set_env(SETTLE_AFTER_SECONDS="30")  # the next backoff: 30 s * 2^(1 + 1)
    expiry = int(time.time()) + STRAND_MARGIN_SECONDS + 90  # 120 s on, less than the margin would be left
    dynamodb.update_item(
        TableName=own_intent_table,
        Key={"id": backed_off["id"]},
        UpdateExpression="SET expiration = :expiry",
        ExpressionAttributeValues={":expiry": {"N": str(expiry)}},
    )
    wait_until_due(settle_at)
    upstream.inject({"status": 500})
    with function_logs() as logs:
        second = settling.settle()

    assert (second["resent"], second["unknown"], second["stranded"]) == (1, 1, 1), second
    stranded = record(aws_clients, own_intent_table, key)
    assert stranded["settle_queue"]["S"] == "stranded" and stranded["settle_attempts"]["N"] == "2"
    assert int(stranded["expiration"]["N"]) == expiry + STRANDED_RETENTION_SECONDS
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [line["level"] for line in lines if line["message"].startswith("intent stranded")] == ["ERROR"]

    requests = upstream.stats()["requests"]
    later = settling.settle()
    assert (later["due"], later["stranded"]) == (0, 1), later  # counted by every run, never resent
    assert upstream.stats()["requests"] == requests

    retry = settling.create(key=key)
    assert retry.status == 201 and retry.json()["id"] == link["id"]
    assert settling.settle()["stranded"] == 0
    assert upstream.stats()["links_created"] == 1


def test_an_intent_the_settler_strands_unsent_names_its_caller_and_upstream_key(
    settling, upstream, aws_clients, own_intent_table
):
    """docs/operations.md, stranded-intents: `filter message = "intent stranded: its outcome is still unknown" |
    fields @timestamp, caller, upstream_key`. An intent a run strands without resending it (halted, or no time left:
    `IntentStore.strand`) is named on its line as a resent one is: its caller and its upstream key, so that the
    operator can look it up at Dots."""
    dynamodb, _ = aws_clients
    upstream.inject({"status": 500, "after_create": True})
    assert settling.create(sub="strand-me").json()["key_state"] == "bound"
    wait_due()
    (item,) = dynamodb.scan(TableName=own_intent_table)["Items"]
    dynamodb.update_item(  # nearly 24 hours old: less than the strand margin left
        TableName=own_intent_table,
        Key={"id": item["id"]},
        UpdateExpression="SET expiration = :expiry",
        ExpressionAttributeValues={":expiry": {"N": str(int(time.time()) + 60)}},
    )

    with function_logs() as logs:
        report = settling.settle(timeout_seconds=3)  # too little time for any resend

    assert report["stranded"] == 1, report
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (stranded,) = [line for line in lines if line["message"].startswith("intent stranded")]
    assert stranded.get("caller") == "user:strand-me", stranded
    assert stranded.get("upstream_key"), stranded
    assert stranded.get("idempotency_key"), stranded


def test_a_run_fits_its_timeout_whatever_the_backlog(settling, upstream):
    """A slow Dots (0.5 s an answer) and a settler with little time to live: a resend starts only while one attempt
    (2 s, so that a slow answer is not a timeout even on a busy machine) and its secret read still fit before the
    run's deadline, so the run answers before its timeout, with every resend it started over, and the rest of the
    backlog waits, due, for the next runs."""
    attempt_seconds = 2
    settling.set_env(PAYOUT_API_TIMEOUT_SECONDS=str(attempt_seconds))
    backlog = 40
    upstream.inject({"status": 500, "after_create": True, "count": backlog})
    for _ in range(backlog):
        assert settling.create().json()["key_state"] == "bound"
    wait_due()
    upstream.inject({"delay_seconds": 0.5, "count": backlog})
    timeout = BUDGET.response_reserve + attempt_seconds + BUDGET.aws_call + 2.5  # 2.5 s to start resends

    started = time.monotonic()
    report = settling.settle(timeout_seconds=timeout)
    elapsed = time.monotonic() - started

    assert elapsed < timeout, (elapsed, report)
    assert upstream.wait_idle(timeout=0.01), "a resend outlived the run"
    assert report["due"] == backlog and report["resent"] + report["skipped"] == backlog, report
    assert 1 <= report["resent"] < backlog and report["settled"] == report["resent"], report

    assert upstream.clear_faults() == backlog - report["resent"]  # the slow answers the run did not use
    left = backlog - report["resent"]
    runs = [settling.settle()]
    assert runs[0]["due"] == left, runs[0]
    # The next runs, as the schedule makes them: on a busy machine a resend may meet its timeout, and its intent
    # then waits out its backoff (SETTLE_AFTER_SECONDS doubled per attempt) for a later run.
    while sum(run["settled"] for run in runs) < left and len(runs) < 6:
        wait_due(2.1)
        runs.append(settling.settle())
    assert sum(run["settled"] for run in runs) == left, runs
    assert upstream.stats()["links_created"] == backlog


class Crash(BaseException):
    """The function's process dying: nothing after it runs, not even the code that drops a lock."""


def test_a_crashed_requests_intent_is_settled_once_its_lock_has_expired(
    settling, upstream, aws_clients, own_intent_table, monkeypatch
):
    """Dots made the link and the function died before recording it: the lock stays as it was written, live until
    the invocation's timeout. The intent is due SETTLE_AFTER_SECONDS after that; until then a run leaves it, and
    then settles it: the link recorded with its owner, the caller's retry replays it."""
    assert settling.create().status == 201  # a warm container: its credentials are read
    key = new_key()
    complete = IntentStore.complete

    def crash(self, lock, link):
        raise Crash

    monkeypatch.setattr(IntentStore, "complete", crash)
    timeout = BUDGET.response_reserve + 2  # 2 s for Dots; the lock lives that long from the request's start
    with pytest.raises(Crash):
        settling.create(key=key, timeout_seconds=timeout)
    monkeypatch.setattr(IntentStore, "complete", complete)
    settling.reset_container()  # Lambda starts a new execution environment
    link_id = upstream.links()[-1]["id"]
    locked = record(aws_clients, own_intent_table, key)
    assert locked["status"]["S"] == "INPROGRESS" and int(locked["in_progress_expiration"]["N"]) > time.time() * 1000
    settle_at = int(locked["settle_at"]["N"])
    assert settle_at == int(locked["in_progress_expiration"]["N"]) // 1000 + 1

    early = settling.settle()
    assert early["due"] == 0, early  # its lock is still live
    wait_until_due(settle_at)
    report = settling.settle()

    assert (report["due"], report["settled"]) == (1, 1), report
    assert read(settling, link_id).status == 200
    replay = settling.create(key=key)
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == link_id
    assert upstream.stats()["links_created"] == 2  # the warm-up's link, and this one
