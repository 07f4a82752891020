"""A link recorded for one intent is never recorded for, or answered to, another intent of the same caller: the
owner record's condition names the key too (owners.py, `put`)."""

from __future__ import annotations

import pytest

from tests.support import frontend_headers, new_key

pytestmark = pytest.mark.integration


def test_a_link_recorded_for_one_key_is_never_answered_as_the_link_of_another_key(function, upstream):
    first_key, second_key = new_key(), new_key()
    first = function.create(key=first_key)
    assert first.status == 201, first.body
    first_id = first.json()["id"]

    # A second payout of the same amount to the same payee, under its own key; the upstream answers with the
    # first link (everything it echoes matches, only the id says which link it is).
    upstream.inject({"link_overrides": {"id": first_id}})
    second = function.create(key=second_key)

    assert not (second.status == 201 and second.json()["id"] == first_id), "one link answered for two intents"
    listed = function.request("GET", "/payout-links", headers=frontend_headers(key=None)).json()["items"]
    assert {item["idempotency_key"] for item in listed if item["id"] == first_id} == {first_key}
