"""What a stranger can learn about the partner names by posting to the webhook route of the local stack: nothing.
Without a valid signature every request gets the same 401, whatever the name and the body's size; the size limit
(413) is only for a partner whose signature verified."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import PARTNER, HttpResult, partner_event, payout_body, signed_webhook

pytestmark = pytest.mark.e2e

UNKNOWN_PARTNER = "no-such-partner"
OVERSIZED = json.dumps(partner_event(payout_body(memo="x" * 17_000))).encode()  # 17 KB: over MAX_BODY_BYTES (16 KiB)


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def unsigned(api: httpx.Client, partner: str, body: bytes) -> HttpResult:
    response = api.post(f"/webhooks/{partner}/payout-links", content=body, headers={"content-type": "application/json"})
    return HttpResult(response.status_code, dict(response.headers), response.content)


def test_an_unsigned_body_gets_the_same_401_for_a_real_and_an_unknown_partner(api, upstream):
    """Over the size limit, so that a 413 would tell the names apart. That every unverifiable request (unsigned,
    another secret, stale, malformed, any size) is the same 401 is tests/unit/test_webhooks.py's."""
    real, unknown = unsigned(api, PARTNER, OVERSIZED), unsigned(api, UNKNOWN_PARTNER, OVERSIZED)

    assert real.status == unknown.status == 401
    assert real.is_problem() and unknown.is_problem()
    # The same bytes but for each request's own id, which is all that tells the two apart.
    assert real.body_but_request_id() == unknown.body_but_request_id()
    assert real.request_id != unknown.request_id
    assert upstream.stats()["requests"] == 0


def test_an_oversized_body_signed_by_the_partner_is_a_413(api, upstream):
    request = signed_webhook(OVERSIZED)

    response = api.post(request.path, content=request.body, headers=request.headers)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(":payload-too-large")
    assert upstream.stats()["requests"] == 0
