"""Partner webhooks over HTTP through the local stack, signed by the `standardwebhooks` library, exactly as a
partner's system would send them. Refused deliveries are tests/unit/test_webhooks.py's, and what a stranger can
learn over HTTP is test_partner_probing.py's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support import HttpResult, new_webhook_id, signed_webhook

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def deliver(api: httpx.Client, **signing) -> HttpResult:
    request = signed_webhook(**signing)
    response = api.post(request.path, content=request.body, headers=request.headers)
    return HttpResult(response.status_code, dict(response.headers), response.content)


def test_an_event_delivered_twice_makes_one_link(api, upstream):
    """The route's smoke test. No authorization header at all: the signature is the credential."""
    webhook_id = new_webhook_id()

    first = deliver(api, webhook_id=webhook_id)
    again = deliver(api, webhook_id=webhook_id, at=datetime.now(UTC) + timedelta(seconds=30))

    assert first.status == again.status == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert upstream.stats()["links_created"] == 1
