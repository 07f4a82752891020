"""What API Gateway does for frontends before the function runs, as the local gateway emulates it from
template.yaml: the JWT authorizer (a missing or invalid token is its 401), the route's required scope (its 403),
and CORS for the allowed browser origins."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from tests.support import CORS_ALLOW_HEADERS, new_key, payout_body, token, token_claims

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
    assert response.headers["www-authenticate"] == (
        'Bearer scope="payouts:write" error="insufficient_scope" error_description="expected scopes: [payouts:write]"'
    )
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


def test_a_missing_token_is_refused_by_the_gateway(api, upstream, stack):
    response = create(api, None)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}  # API Gateway's own body, not the function's problem
    assert response.headers["www-authenticate"] == "Bearer"
    assert_never_ran(stack, response, upstream)


@pytest.mark.parametrize(
    ("bearer", "description"),
    [
        ("not-a-jwt", "token contains an invalid number of segments"),
        (
            jwt.encode({"sub": "user-1", "scope": "payouts:write"}, "any-key-0123456789abcdef0123456789", "HS256"),
            "signing method HS256 is invalid",
        ),
    ],
    ids=["not a JWT", "HS256"],
)
def test_an_invalid_token_is_refused_by_the_gateway(api, upstream, stack, bearer, description):
    response = create(api, bearer)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    challenge = f'Bearer scope="" error="invalid_token" error_description="{description}"'
    assert response.headers["www-authenticate"] == challenge
    assert_never_ran(stack, response, upstream)


def test_an_expired_token_of_the_issuer_is_refused_by_the_gateway(api, upstream, stack):
    response = create(api, token("user-1", exp=int(time.time()) - 1))

    assert response.status_code == 401
    assert response.headers["www-authenticate"].endswith('error_description="Token is expired"')
    assert_never_ran(stack, response, upstream)


@pytest.mark.parametrize("subject", [None, False, 0, []], ids=["null", "false", "0", "[]"])
def test_a_valid_token_whose_subject_names_no_one_gets_the_functions_own_401(api, upstream, stack, subject):
    """The gateway passes it, as API Gateway would (claims as strings: `null`...); the function refuses it with its
    problem, so that two machine clients with such a subject never share one caller's links."""
    response = create(api, token_claims({"sub": subject, "client_id": "client-A"}))

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:payout-link-proxy:problem:unauthenticated"
    assert "www-authenticate" not in response.headers  # the function's answer, not the gateway's
    assert upstream.stats()["requests"] == 0


def assert_never_ran(stack, response: httpx.Response, upstream) -> None:
    """The function never ran for the request: no log line carries its request id, and Dots was not asked."""
    assert upstream.stats()["requests"] == 0
    assert response.headers["apigw-requestid"] not in stack.log_path.read_text()


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
    """A browser can read a problem+json (and its Retry-After) only if the answer carries the CORS headers; so are
    the gateway's own answers (a 401 for no token), as the local gateway adds them to every answer."""
    problem = create(api, token("user-1"), origin=ALLOWED_ORIGIN, **{"idempotency-key": "k" * 256})
    refused = create(api, None, origin=ALLOWED_ORIGIN)

    assert (problem.status_code, refused.status_code) == (400, 401)
    assert problem.headers["access-control-allow-origin"] == refused.headers["access-control-allow-origin"]
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_answers_to_another_origin_carry_no_cors_headers(api, upstream):
    response = create(api, token("user-1"), origin=OTHER_ORIGIN)

    assert response.status_code == 201  # CORS binds browsers, not servers: the browser hides this answer
    assert not [name for name in response.headers if name.startswith("access-control-")]
