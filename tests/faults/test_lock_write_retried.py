"""A lock write whose first attempt landed unanswered and whose retry botocore got refused (throttled) may have
landed: the answer says the key is bound and the lock is dropped, never "released" for a record the settler will
later resend (store.py, `_store_error`)."""

from __future__ import annotations

import time

import pytest

from tests.support import BUDGET, new_key, payout_body

pytestmark = pytest.mark.faults


def test_a_key_answered_released_never_gets_a_link_from_the_settler(function, upstream, aws_faults, own_intent_table):
    function.set_env(SETTLE_AFTER_SECONDS="1")
    key = new_key()
    timeout = 6.0
    # The lock lands at once and its answer comes after botocore's read timeout; botocore's retry is throttled.
    aws_faults.stall("DynamoDB_20120810.PutItem", seconds=BUDGET.aws_read_timeout + 0.5, count=1, forward=True)
    aws_faults.fail("DynamoDB_20120810.PutItem", count=1)

    started = time.time()
    refused = function.create(key=key, timeout_seconds=timeout)
    assert refused.status == 503, refused.body
    state = refused.json()["key_state"]
    assert upstream.stats()["requests"] == 0
    assert aws_faults.wait_idle(timeout=5)

    # Told "released", the caller sends the payout again under a new key (any key would do), and gets it.
    again = function.create(key=new_key()) if state == "released" else None

    # Once the first attempt's (invisible) lock has expired, the settler runs.
    time.sleep(max(0.0, started + timeout + 2.5 - time.time()))
    function.settle()

    if state == "released":
        assert again is not None and again.status == 201, again.body
        # "released: nothing was made, the key is free for any body"
        corrected = function.create(payout_body(amount=2600), key=key)
        assert upstream.stats()["links_created"] == 1 + (corrected.status == 201), (
            "the settler made a link for a request whose caller was told nothing was made",
            upstream.links(),
            corrected.status,
        )
