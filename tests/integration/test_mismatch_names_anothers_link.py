"""A mismatched upstream answer that names a link the proxy recorded for another caller: an owner conflict, which
spends this caller's key and never cancels the other caller's link (service.py, `_cancel_mismatched`)."""

from __future__ import annotations

import pytest

from tests.support import frontend_headers, payout_body

pytestmark = pytest.mark.integration


def test_a_mismatched_answer_naming_another_callers_link_never_cancels_that_link(function, upstream):
    theirs = function.create(sub="user-a")  # 2500 cents, recorded for user:user-a
    assert theirs.status == 201, theirs.body
    their_id = theirs.json()["id"]

    # The upstream answers user-b's create with user-a's link (same id, user-a's amount): a mix-up the mismatch
    # check is there to catch. It is caught, and user-b gets its 502...
    upstream.inject({"link_overrides": {"id": their_id, "amount": 25.0}})
    mine = function.create(payout_body(amount=2600), sub="user-b")
    # (It names another caller's link: an owner conflict, which spends user-b's key and cancels nothing.)
    assert mine.status == 502 and mine.json()["type"].endswith("upstream-link-conflict"), mine.body
    assert mine.json()["key_state"] == "spent"

    # ...but user-a's live link must be left alone: it is not user-b's to cancel.
    assert upstream.link(their_id)["status"] != "canceled"
    read = function.request("GET", f"/payout-links/{their_id}", headers=frontend_headers(key=None, sub="user-a"))
    assert read.status == 200 and read.json()["status"] != "canceled"
