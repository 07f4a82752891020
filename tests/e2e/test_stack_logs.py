"""The function's logs as the local stack's execution environments write them (CloudWatch, in AWS), over whole
flows driven over HTTP: the facts an operator needs are there, the secrets and the payee's contact details
are not."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import PARTNER, never_logged, new_key, payout_body, signed_webhook, token

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


@pytest.fixture
def new_log_lines(stack) -> Callable[[], str]:
    """The log lines written from now on, read once the flow is done."""
    start = stack.log_path.stat().st_size

    def read() -> str:
        with stack.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode()

    return read


def summaries(text: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in text.splitlines() if line.startswith('{"level"')]
    return [entry for entry in entries if "outcome" in entry]


def test_logs_of_every_kind_of_flow_carry_the_facts_and_no_secret(api, upstream, new_log_lines):
    sent_headers: list[dict[str, str]] = []

    def frontend(body: dict, **extra: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {token('log-user')}", "idempotency-key": new_key(), **extra}
        sent_headers.append(headers)
        return api.post("/payout-links", json=body, headers=headers)

    def partner(**signing: Any) -> httpx.Response:
        request = signed_webhook(**signing)
        sent_headers.append(request.headers)
        return api.post(request.path, content=request.body, headers=request.headers)

    created = frontend(payout_body())
    assert created.status_code == 201
    assert frontend(payout_body(amount=10.5)).status_code == 422
    upstream.inject({"status": 500, "count": 3})
    assert frontend(payout_body(amount=3100)).status_code == 502
    delivered = partner()
    assert delivered.status_code == 201
    assert partner(headers={"webhook-signature": delivered.request.headers["webhook-signature"]}).status_code == 401

    text = new_log_lines()
    for headers in sent_headers:
        for value in never_logged(headers):
            assert value not in text, f"the stack's logs carry {value[:12]}..."
    facts = [
        (entry["caller"], entry.get("amount"), entry.get("link_id"), entry["outcome"]) for entry in summaries(text)
    ]
    assert facts == [
        ("user:log-user", 2500, created.json()["id"], "created"),
        ("user:log-user", None, None, "validation-failed"),
        ("user:log-user", 3100, None, "upstream-failed"),
        (f"partner:{PARTNER}", 2500, delivered.json()["id"], "created"),
        (f"partner:{PARTNER}", None, None, "unauthenticated"),
    ]
