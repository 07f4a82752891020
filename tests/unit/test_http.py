"""The router at the HTTP edge (payout_links/http.py): routes by method and path, errors by class, payload 2.0."""

from __future__ import annotations

import pytest

from payout_links.http import Request, Response, Router

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


def http_event(method: str, path: str, *, body: str | None = None, headers: dict | None = None) -> dict:
    """A payload 2.0 event, whatever its route (the router sees only the method and the raw path)."""
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers or {},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "r-1", "stage": "$default"},
        "body": body,
        "isBase64Encoded": False,
    }


def resolve(router: Router, method: str, path: str, **claims: str) -> dict:
    event = http_event(method, path, headers={"authorization": "Bearer x"})
    if claims:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": []}}
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
        router.resolve(http_event("GET", "/boom"), None)


def test_the_request_reads_the_event_as_api_gateway_sends_it():
    event = http_event("POST", "/payout-links", body="{}", headers={"Content-Type": "application/json", "X-A": "1"})
    event["isBase64Encoded"] = True

    request = Request.from_event(event)

    assert (request.method, request.path, request.body, request.is_base64_encoded) == (
        "POST",
        "/payout-links",
        "{}",
        True,
    )
    assert request.headers["content-type"] == "application/json" and request.headers["x-a"] == "1"
    assert request.claims is None  # no token: nothing the authorizer verified
