"""A take-over whose write landed but whose answer was lost, and which botocore sent again, is the retry's own
lock (its token), not another request's 409 (store.py, `_take_over`)."""

from __future__ import annotations

import pytest

from tests.support import BUDGET, new_key

pytestmark = pytest.mark.faults


def test_a_take_over_that_lands_late_is_the_retrys_own_lock(function, upstream, aws_faults):
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1")
    key = new_key()
    upstream.inject({"status": 500, "after_create": True})
    first = function.create(key=key)
    assert first.status == 502 and first.json()["key_state"] == "bound"
    (link,) = upstream.links()

    # The retry's take-over lands at once; its answer comes after botocore's read timeout, and botocore resends it.
    aws_faults.stall("DynamoDB_20120810.UpdateItem", seconds=BUDGET.aws_read_timeout + 0.5, count=1, forward=True)
    retry = function.create(key=key)
    assert aws_faults.wait_idle(timeout=5)

    assert retry.status == 201, retry.body
    assert retry.json()["id"] == link["id"]
