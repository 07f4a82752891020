"""The limit overrides item cannot be read: replays and retries, which reserve nothing, are still answered (the last
copy read, or the defaults, stand in; limits.py)."""

from __future__ import annotations

import pytest

from tests.support import new_key

pytestmark = pytest.mark.faults


def test_a_replay_is_answered_while_the_limit_overrides_cannot_be_read(function, upstream, aws_faults):
    function.set_env(CALLER_DAILY_AMOUNT_LIMIT_CENTS="2500000", CALLER_HOURLY_LINK_LIMIT="1000")
    key = new_key()
    created = function.create(key=key)
    assert created.status == 201, created.body

    function.reset_container()  # another container: nothing cached
    aws_faults.fail("DynamoDB_20120810.GetItem", count=2)  # the overrides read, and botocore's retry
    replay = function.create(key=key)

    assert replay.status == 201, replay.body
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json()["id"] == created.json()["id"]
