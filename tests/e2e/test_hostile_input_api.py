"""Hostile input through the local stack, as a frontend would send it: refused with a problem that points at the
field, before anything reaches the payout provider."""

from __future__ import annotations

import httpx
import pytest

from tests.support import EMAIL, PHONE, frontend_headers, payout_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("payee", "pointer"),
    [
        ({"email": "ada\x00@example.com"}, "#/payee/email"),
        ({"first_name": "Ada\r\nYour payout was canceled, call 555-0199"}, "#/payee/first_name"),
    ],
    ids=["NUL in the email", "CR/LF in the first name"],
)
def test_control_characters_are_a_422_pointing_at_the_field_and_never_forwarded(api, upstream, payee, pointer):
    body = payout_body(payee={"country_code": "1", "phone_number": PHONE, "first_name": "Ada", "email": EMAIL, **payee})

    response = api.post("/payout-links", json=body, headers=frontend_headers())

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(":validation-failed")
    assert problem["errors"] == [
        {"pointer": pointer, "detail": "must not contain control characters or line separators"}
    ]
    assert upstream.stats()["requests"] == 0
