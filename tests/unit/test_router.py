"""The router at the HTTP edge (payout_links/router.py): routes by the event's route key, errors by class, payload
2.0; and the app's route table, which is the template's."""

from __future__ import annotations

import re

import pytest

from local_stack.core.gateway import Route
from payout_links import app
from payout_links.router import Request, Response, Router
from tests.support import http_event, template_routes, token

pytestmark = pytest.mark.unit


class Base(Exception):
    pass


class Specific(Base):
    pass


@pytest.fixture
def router() -> Router:
    def read(request: Request) -> Response:
        return Response(200, f"read {request.path_parameters['id']} by {request.claims['sub']}")

    def cancel(request: Request) -> Response:
        raise Specific(request.path_parameters["id"])

    def webhook(request: Request) -> Response:
        raise Base(request.path_parameters["partner"])

    router = Router(
        {
            "GET /payout-links/{id}": read,
            "DELETE /payout-links/{id}": cancel,
            "POST /webhooks/{partner}/payout-links": webhook,
        }
    )

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


def test_the_route_is_the_events_route_key_not_its_path(router):
    """API Gateway has matched the route: its key decides, whatever the raw path says, and the path's values come
    from pathParameters."""
    event = http_event("GET", "/payout-links/abc-1", headers={"authorization": f"Bearer {token('ada')}"})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/webhooks/acme/payout-links"

    assert router.resolve(event, None)["body"] == "read abc-1 by ada"

    event = http_event("GET", "/payout-links/abc-1")
    event["routeKey"] = "GET /payout-links"  # a route the router has no handler for; the path still looks like one

    assert router.resolve(event, None)["statusCode"] == 404


@pytest.mark.parametrize(
    "route_key",
    [
        "GET /Payout-Links/{id}",
        "get /payout-links/{id}",
        "GET /payout-links/{ID}",
        "GET /payout-links/{id}/",
        "$default",
    ],
)
def test_a_route_key_is_matched_exactly_case_included(router, route_key):
    """The route key is the template's as written: any other spelling, or `$default` (the template has none), is no
    route of the function's."""
    event = http_event("GET", "/payout-links/abc-1", headers={"authorization": f"Bearer {token('ada')}"})
    event["routeKey"] = route_key

    assert router.resolve(event, None)["statusCode"] == 404


@pytest.mark.parametrize("link_id", ["li%20nk", "%2e%2e", "abc%2Fdef", "é", "a.b"])
def test_a_path_value_reaches_the_route_as_the_gateway_passed_it(router, link_id):
    """The router decodes nothing: the id is `pathParameters`' value, as the gateway matched it in the raw path."""
    event = http_event("GET", f"/payout-links/{link_id}", headers={"authorization": f"Bearer {token('ada')}"})

    assert event["pathParameters"] == {"id": link_id}
    assert router.resolve(event, None)["body"] == f"read {link_id} by ada"


@pytest.mark.parametrize("route", template_routes(), ids=lambda route: route.route_key)
def test_each_event_names_its_route_and_carries_its_path_values(route):
    """The events every test tier builds (tests.support.http_event, the local gateway's build_event) carry what the
    router reads: the template's route key, and a value for each name in the route's braces."""
    path = route.path.replace("{id}", "abc-1").replace("{partner}", "acme")
    event = http_event(route.method, path)
    names = set(re.findall(r"\{(\w+)\}", route.path))

    assert event["routeKey"] == event["requestContext"]["routeKey"] == route.route_key
    assert set(event.get("pathParameters", {})) == names
    request = Request.from_event(event)
    assert (request.route_key, set(request.path_parameters)) == (route.route_key, names)


def test_the_app_routes_exactly_the_templates_routes_of_the_function():
    """One route table: every route template.yaml gives the function has a handler in app.ROUTES, and every
    handler a route, by the same key API Gateway puts in the event."""
    assert app.app.route_keys == set(app.ROUTES) == {route.route_key for route in template_routes()}


def test_the_most_specific_error_handler_answers(router):
    specific = resolve(router, "DELETE", "/payout-links/xyz")
    base = resolve(router, "POST", "/webhooks/acme/payout-links")

    assert (specific["statusCode"], specific["body"], specific["headers"]["Retry-After"]) == (409, "specific xyz", "2")
    assert specific["headers"]["Content-Type"] == "application/problem+json"
    assert (base["statusCode"], base["body"]) == (500, "base acme")


def test_an_error_no_handler_takes_is_raised():
    def boom(request: Request) -> Response:
        raise KeyError("boom")

    router = Router({"GET /boom": boom})

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
