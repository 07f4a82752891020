"""Another body on a spent key is refused (422) with `key_state: "spent"`, as the same body is (store.py,
`_existing`)."""

from __future__ import annotations

import pytest

from tests.support import new_key, payout_body

pytestmark = pytest.mark.integration


def test_another_body_on_a_spent_key_is_told_the_key_is_spent(function, upstream):
    key = new_key()
    upstream.inject({"link_overrides": {"amount": 1.0}})
    spent = function.create(key=key)
    assert spent.json()["key_state"] == "spent", spent.body

    other = function.create(payout_body(amount=2600), key=key)

    assert other.status == 422
    assert other.json()["key_state"] == "spent", other.body
