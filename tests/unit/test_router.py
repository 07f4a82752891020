"""The router at the HTTP edge (payout_links/router.py): routes by method and path, errors by class, payload 2.0."""

from __future__ import annotations

import pytest

from local_stack.core.gateway import Route
from payout_links.router import Request, Response, Router
from tests.support import http_event, template_routes, token

pytestmark = pytest.mark.unit


class Base(Exception):
    pass


class Specific(Base):
    pass


@pytest.fixture
def router() -> Router:
    router = Router()

    @router.get("/payout-links/<link_id>")
    def read(request: Request, link_id: str) -> Response:
        return Response(200, f"read {link_id} by {request.claims['sub']}")

    @router.delete("/payout-links/<link_id>")
    def cancel(request: Request, link_id: str) -> Response:
        raise Specific(link_id)

    @router.post("/webhooks/<partner>/payout-links")
    def webhook(request: Request, partner: str) -> Response:
        raise Base(partner)

    @router.error_handler(Base)
    def base(error: Base, request: Request) -> Response:
        return Response(500, f"base {error}")

    @router.error_handler(Specific)
    def specific(error: Specific, request: Request) -> Response:
        return Response(409, f"specific {error}", "application/problem+json", {"Retry-After": "2"})

    @router.not_found
    def missing(request: Request) -> Response:
        return Response(404, f"no {request.method} {request.path}")

    return router


def resolve(router: Router, method: str, path: str, *, sub: str | None = None) -> dict:
    """The router's answer to a request; the route is the template's, or one the template lacks (an event API
    Gateway would send only for a route the function does not have)."""
    headers = {"authorization": f"Bearer {token(sub)}" if sub else "Bearer x"}
    routed = any(route.match(method, path) is not None for route in template_routes())
    event = http_event(
        method, path, headers=headers, route=None if routed else Route(method, path, jwt_protected=False)
    )
    return router.resolve(event, None)


def test_a_route_gets_its_path_parameters_and_the_claims(router):
    answer = resolve(router, "GET", "/payout-links/abc-1", sub="ada")

    assert answer == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": "read abc-1 by ada",
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/payout-links/abc"), ("GET", "/payout-links/a/b"), ("GET", "/payout-links/"), ("HEAD", "/docs")],
)
def test_no_route_is_the_not_found_answer(router, method, path):
    answer = resolve(router, method, path)

    assert (answer["statusCode"], answer["body"]) == (404, f"no {method} {path}")


def test_the_most_specific_error_handler_answers(router):
    specific = resolve(router, "DELETE", "/payout-links/xyz")
    base = resolve(router, "POST", "/webhooks/acme/payout-links")

    assert (specific["statusCode"], specific["body"], specific["headers"]["Retry-After"]) == (409, "specific xyz", "2")
    assert specific["headers"]["Content-Type"] == "application/problem+json"
    assert (base["statusCode"], base["body"]) == (500, "base acme")


def test_an_error_no_handler_takes_is_raised():
    router = Router()

    @router.get("/boom")
    def boom(request: Request) -> Response:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        router.resolve(http_event("GET", "/boom", route=Route("GET", "/boom", jwt_protected=False)), None)


def test_the_request_reads_the_event_as_api_gateway_sends_it():
    event = http_event("POST", "/payout-links", body="{}", base64_encoded=True)
    event["headers"] = {"Content-Type": "application/json", "X-A": "1"}  # names in any case are read alike

    request = Request.from_event(event)

    assert (request.method, request.path, request.body, request.is_base64_encoded) == (
        "POST",
        "/payout-links",
        "e30=",  # as the event carries it: decoding is the caller's choice
        True,
    )
    assert request.headers["content-type"] == "application/json" and request.headers["x-a"] == "1"
    assert request.claims is None  # no token: nothing the authorizer verified


def test_the_request_reads_the_query_string_parameters():
    event = http_event("GET", "/payout-links", query="limit=5&cursor=a%2Db&limit=6")

    assert Request.from_event(event).query == {"limit": "5,6", "cursor": "a-b"}  # repeated: joined, as API Gateway does
    assert Request.from_event(http_event("GET", "/payout-links")).query == {}  # no query: no queryStringParameters
