"""One request however its text is written: a body whose text is composed (U+00E9) and the same body decomposed
(e, U+0301) are one intent through the real handler, DynamoDB and the Dots emulator (docs/idempotency.md)."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from tests.support import new_key, payout_body

pytestmark = pytest.mark.integration

TEXT = {
    "user_id": "Jos\u00e9-7",
    "payee": {
        "country_code": "1",
        "phone_number": "5555550123",
        "first_name": "Jos\u00e9",
        "last_name": "N\u00fa\u00f1ez",
        "email": "jos\u00e9@example.com",
    },
    "delivery": {"method": "all", "message": "\u00a1Tu pago est\u00e1 listo!"},
    "memo": "Caf\u00e9 cr\u00e8me",
    "metadata": {"caf\u00e9": "cr\u00e8me br\u00fbl\u00e9e"},
}


def spelled(form: str, body: dict[str, Any]) -> str:
    """`body` as JSON with its text in the Unicode normalization form `form`, sent as UTF-8, not as escapes."""
    return unicodedata.normalize(form, json.dumps(body, ensure_ascii=False))


@pytest.mark.parametrize(
    ("first", "second"), [("NFC", "NFD"), ("NFD", "NFC")], ids=["composed first", "decomposed first"]
)
def test_a_body_in_the_other_spelling_replays_the_same_link(function, upstream, first, second):
    key, body = new_key(), payout_body(**TEXT)
    assert spelled(first, body) != spelled(second, body)

    created = function.create(spelled(first, body), key=key)
    replay = function.create(spelled(second, body), key=key)

    assert created.status == 201 and "idempotent-replayed" not in created.headers, created.body
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true", replay.body
    assert replay.body == created.body
    assert (upstream.stats()["creates"], upstream.stats()["links_created"]) == (1, 1)
    sent = upstream.stats()["last_request"]["body"]
    assert {name: sent[name] for name in TEXT} == TEXT  # Dots got the composed text, whichever came first
