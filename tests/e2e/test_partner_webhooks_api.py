"""Partner webhooks over HTTP through the local stack, signed by the `standardwebhooks` library, exactly as a
partner's system would send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support import OTHER_PARTNER_SECRET, HttpResult, new_webhook_id, signed_webhook

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
    webhook_id = new_webhook_id()

    first = deliver(api, webhook_id=webhook_id)
    again = deliver(api, webhook_id=webhook_id, at=datetime.now(UTC) + timedelta(seconds=30))

    assert first.status == again.status == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert upstream.stats()["links_created"] == 1


@pytest.mark.parametrize(
    "signing",
    [
        {"secret": OTHER_PARTNER_SECRET},
        {"partner": "no-such-partner"},
        {"at": datetime.now(UTC) - timedelta(minutes=6)},
        {"headers": {"webhook-signature": "v1"}},
    ],
    ids=["another partner's secret", "unknown partner", "stale", "malformed signature"],
)
def test_an_unverifiable_event_is_a_401_problem(api, upstream, signing):
    result = deliver(api, **signing)

    assert result.status == 401 and result.is_problem()
    assert upstream.stats()["requests"] == 0


def test_the_webhook_route_needs_no_jwt(api, upstream):
    """No authorization header at all: the signature is the credential."""
    result = deliver(api)

    assert result.status == 201
