"""The settler and a caller's retry, raced: whichever takes the intent's lock first sends it, and the other never
does. Both run in this process, on threads, against moto and the Dots emulator; Dots is made slow so that the
first one holds the lock while the other comes. Each test ends by counting the links Dots made: one."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from payout_links.store import IntentStore
from tests.support import new_key, token, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def settling(function, own_intent_table):
    # Due as soon as the caller's lock is dropped; one attempt per request, so a fault is used up at once.
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    return function


def unknown_intent(function, upstream) -> tuple[str, str]:
    """A create whose answer was lost after Dots made the link: its key and the link's id, once it is due."""
    key = new_key()
    upstream.inject({"status": 500, "after_create": True})
    assert function.create(key=key).json()["key_state"] == "bound"
    (link,) = upstream.links()
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS: what the settler waits for by design
    return key, link["id"]


def in_thread(target) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()))
    thread.start()
    return thread, results


def test_a_callers_retry_that_took_the_lock_first_is_left_to_it(settling, upstream, monkeypatch):
    """The run reads the due intent from the index; before it takes the lock, the caller's retry takes it and is at
    Dots (slowly). The run's take-over fails: it skips the intent and sends nothing, and the caller's retry records
    the link."""
    key, link_id = unknown_intent(settling, upstream)
    creates = upstream.stats()["creates"]
    upstream.inject({"delay_seconds": 1.5})  # the caller's retry holds the lock while the run tries to take it
    retries: list[tuple[threading.Thread, list[Any]]] = []
    due = IntentStore.due

    def due_then_the_caller_retries(self, *, limit: int):
        found = due(self, limit=limit)
        retries.append(in_thread(lambda: settling.create(key=key)))
        wait_until(lambda: upstream.stats()["creates"] > creates, timeout=10)  # the retry holds the lock, at Dots
        return found

    monkeypatch.setattr(IntentStore, "due", due_then_the_caller_retries)
    try:
        report = settling.settle()
    finally:
        monkeypatch.setattr(IntentStore, "due", due)
        for thread, _ in retries:
            thread.join(timeout=30)

    assert (report["due"], report["resent"], report["skipped"]) == (1, 0, 1), report
    ((_, (retried,)),) = retries
    assert retried.status == 201 and retried.json()["id"] == link_id
    assert upstream.stats()["creates"] == creates + 1  # the caller's retry alone
    assert settling.settle()["due"] == 0
    assert upstream.stats()["links_created"] == 1


def test_a_callers_retry_while_a_run_holds_the_lock_is_409_bound(settling, upstream):
    """The run has taken the intent's lock and is at Dots (slowly); the caller's retry gets 409 with the key bound
    and a Retry-After, and reaches nothing. Retrying after the run, it gets the link the run recorded."""
    key, link_id = unknown_intent(settling, upstream)
    creates = upstream.stats()["creates"]
    upstream.inject({"delay_seconds": 1.5})  # the run's resend holds the lock
    run, reports = in_thread(settling.settle)
    try:
        wait_until(lambda: upstream.stats()["creates"] > creates, timeout=10)
        retry = settling.create(key=key)
    finally:
        run.join(timeout=30)

    assert retry.status == 409 and retry.is_problem(), retry.body
    assert retry.json()["type"].endswith("request-in-progress") and retry.json()["key_state"] == "bound"
    assert int(retry.headers["retry-after"]) >= 1
    (report,) = reports
    assert (report["resent"], report["settled"]) == (1, 1), report
    assert upstream.stats()["creates"] == creates + 1  # the run's resend alone
    again = settling.create(key=key)
    assert again.status == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == link_id
    read = settling.request("GET", f"/payout-links/{link_id}", headers={"authorization": f"Bearer {token()}"})
    assert read.status == 200
    assert upstream.stats()["links_created"] == 1
