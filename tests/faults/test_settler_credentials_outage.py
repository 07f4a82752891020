"""The payout credentials cannot be read: the settler halts at the first intent instead of failing each due intent
in turn, and counts nothing as resent (service.py, `_settle_one`)."""

from __future__ import annotations

import time

import pytest

from tests.support import new_key

pytestmark = pytest.mark.faults


def test_a_credentials_outage_halts_the_settler_and_sends_nothing(function, upstream, aws_faults, own_intent_table):
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject(*[{"status": 500, "after_create": True}] * 3)
    for _ in range(3):
        assert function.create(key=new_key()).json()["key_state"] == "bound"
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    function.reset_container()  # the settler's own container: no credentials read yet
    aws_faults.fail("secretsmanager.GetSecretValue")
    requests = upstream.stats()["requests"]
    report = function.settle()

    assert upstream.stats()["requests"] == requests  # nothing reached the upstream
    assert report["due"] >= 3
    assert report["resent"] == 0 and report["halted"], report
