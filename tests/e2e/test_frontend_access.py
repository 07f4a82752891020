"""What API Gateway does for frontends before the function runs, as the local gateway emulates it from
template.yaml: the route's required scope, and CORS for the allowed browser origins."""

from __future__ import annotations

import httpx
import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from tests.support import CORS_ALLOW_HEADERS, new_key, payout_body, token

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = load_template(TEMPLATE_PATH)["Parameters"]["CorsAllowedOrigins"]["Default"].split(",")[0]
OTHER_ORIGIN = "https://evil.example.test"


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def create(api: httpx.Client, bearer: str | None, body: dict | None = None, **headers: str) -> httpx.Response:
    all_headers = {"content-type": "application/json", "idempotency-key": new_key(), **headers}
    if bearer is not None:
        all_headers["authorization"] = f"Bearer {bearer}"
    return api.post("/payout-links", json=payout_body() if body is None else body, headers=all_headers)


def preflight(api: httpx.Client, origin: str, path: str = "/payout-links") -> httpx.Response:
    return api.options(
        path,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,idempotency-key",
        },
    )


# --- the required scope ------------------------------------------------------------------------------------------


def test_a_token_without_the_scope_is_refused_by_the_gateway(api, upstream):
    response = create(api, token("user-1", scope="payouts:read profile"))

    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}  # API Gateway's own body, not the function's
    assert upstream.stats()["requests"] == 0


def test_a_token_without_any_scope_is_refused_by_the_gateway(api, upstream):
    response = create(api, token("user-1", scope=None))

    assert response.status_code == 403


@pytest.mark.parametrize(
    "claims",
    [{"scope": "profile payouts:write"}, {"scope": None, "scp": ["payouts:write"]}],
    ids=["one of several scopes", "scp claim as a list"],
)
def test_a_token_with_the_scope_gets_through(api, upstream, claims):
    assert create(api, token("user-1", **claims)).status_code == 201


def test_a_missing_token_still_reaches_the_function_for_its_401(api, upstream):
    response = create(api, None)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:payout-link-proxy:problem:unauthenticated"


# --- CORS --------------------------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(api, upstream):
    response = preflight(api, ALLOWED_ORIGIN)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert set(response.headers["access-control-allow-methods"].split(",")) == {"GET", "POST", "DELETE", "OPTIONS"}
    assert set(response.headers["access-control-allow-headers"].split(",")) == set(CORS_ALLOW_HEADERS)
    assert response.headers["access-control-max-age"] == "600"
    assert upstream.stats()["requests"] == 0


def test_a_preflight_from_another_origin_gets_no_cors_headers(api, upstream):
    response = preflight(api, OTHER_ORIGIN)

    assert response.status_code == 204
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_a_preflight_needs_no_token_even_on_the_protected_route(api, upstream):
    assert preflight(api, ALLOWED_ORIGIN).status_code == 204  # no authorization header was sent


def test_answers_to_an_allowed_origin_carry_the_cors_headers(api, upstream):
    response = create(api, token("user-1"), origin=ALLOWED_ORIGIN)

    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert set(response.headers["access-control-expose-headers"].split(",")) == {
        "idempotent-replayed",
        "retry-after",
        "apigw-requestid",
    }
    assert response.headers["apigw-requestid"]  # what the exposed name lets a frontend read and quote


def test_error_answers_to_an_allowed_origin_carry_them_too(api, upstream):
    """A browser can read a problem+json (and its Retry-After) only if the answer carries the CORS headers."""
    response = create(api, None, origin=ALLOWED_ORIGIN)

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_answers_to_another_origin_carry_no_cors_headers(api, upstream):
    response = create(api, token("user-1"), origin=OTHER_ORIGIN)

    assert response.status_code == 201  # CORS binds browsers, not servers: the browser hides this answer
    assert not [name for name in response.headers if name.startswith("access-control-")]
