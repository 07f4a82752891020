"""The settler, in-process against moto and the Dots emulator: every intent whose caller never came back reaches
a final state (docs/idempotency.md, "Settling")."""

from __future__ import annotations

import time

import pytest

from tests.support import new_key, token

pytestmark = pytest.mark.integration


@pytest.fixture
def settling(function):
    # Due as soon as the caller's lock is dropped; one attempt per request, so a fault is used up at once.
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    return function


def wait_due(seconds: float = 1.1) -> None:
    time.sleep(seconds)  # SETTLE_AFTER_SECONDS: what the settler waits for by design


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
    read = settling.request("GET", f"/payout-links/{link['id']}", headers={"authorization": f"Bearer {token()}"})
    assert read.status == 200
    assert settling.settle()["due"] == 0
