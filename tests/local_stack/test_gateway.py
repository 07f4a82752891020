"""The local stand-in for API Gateway (local_stack/core/gateway.py): routes from the template (template.yaml's,
and made-up ones), JWT claims, CORS, and payload 2.0 events."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from local_stack.core.gateway import Cors, Route, build_event, routes_from_template
from local_stack.core.jwt_authorizer import Authorized, granted_scopes
from local_stack.core.template import load_template
from local_stack.stack import FUNCTION, TEMPLATE_PATH
from payout_links.inbound import frontend_caller
from payout_links.problems import Unauthenticated
from payout_links.router import Request
from tests.support import CORS_ALLOW_HEADERS

pytestmark = pytest.mark.unit

PAYOUT_LINKS = Route("POST", "/payout-links", jwt_protected=True)
WEBHOOK = Route("POST", "/webhooks/{partner}/payout-links", jwt_protected=False)


def event_for(
    route: Route,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    path: str = "/payout-links",
    parameters: dict[str, str] | None = None,
    query: str = "",
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event for a request; with `claims`, as the authorizer accepted a token with them."""
    authorized = Authorized(claims, granted_scopes(claims)) if claims is not None else None
    return build_event(
        route, parameters or {}, "POST", path, query, headers or {}, body, "198.51.100.7", "req-42", authorized
    )


def test_the_template_declares_post_payout_links_behind_the_jwt_authorizer() -> None:
    routes = routes_from_template(load_template(TEMPLATE_PATH), FUNCTION)

    assert PAYOUT_LINKS in routes
    assert len({route.route_key for route in routes}) == len(routes)


def test_each_route_requires_exactly_the_scopes_the_template_gives_it() -> None:
    """What the local gateway enforces, read from template.yaml with every parameter at its default: a token
    needs one of these scopes (`Route.scopes` takes no part in comparing routes, so it is checked here)."""
    routes = {
        route.route_key: (route.jwt_protected, route.scopes)
        for route in routes_from_template(load_template(TEMPLATE_PATH), FUNCTION)
    }

    assert routes == {
        "POST /payout-links": (True, ("payouts:write",)),
        "GET /payout-links": (True, ("payouts:read", "payouts:write")),
        "GET /payout-links/{id}": (True, ("payouts:read", "payouts:write")),
        "DELETE /payout-links/{id}": (True, ("payouts:write",)),
        "POST /webhooks/{partner}/payout-links": (False, ()),
        "GET /openapi.json": (False, ()),
        "GET /docs": (False, ()),
    }


def test_routes_follow_default_and_explicit_authorizers() -> None:
    template = {
        "Resources": {
            "Api": {"Type": "AWS::Serverless::HttpApi", "Properties": {"Auth": {"DefaultAuthorizer": "Jwt"}}},
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Events": {
                        "Create": {
                            "Type": "HttpApi",
                            "Properties": {"ApiId": {"Ref": "Api"}, "Path": "/payout-links", "Method": "post"},
                        },
                        "Webhook": {
                            "Type": "HttpApi",
                            "Properties": {
                                "ApiId": {"Ref": "Api"},
                                "Path": "/webhooks/{partner}/payout-links",
                                "Method": "POST",
                                "Auth": {"Authorizer": "NONE"},
                            },
                        },
                        "Nightly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}},
                    }
                },
            },
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        }
    }

    assert routes_from_template(template) == [PAYOUT_LINKS, WEBHOOK]


def test_a_route_matches_its_method_and_path_only() -> None:
    assert PAYOUT_LINKS.match("POST", "/payout-links") == {}
    assert PAYOUT_LINKS.match("GET", "/payout-links") is None
    assert PAYOUT_LINKS.match("POST", "/payout-links/") is None
    assert PAYOUT_LINKS.match("POST", "/payout-links/pl_1") is None
    assert PAYOUT_LINKS.match("POST", "/v2/payout-links") is None
    assert PAYOUT_LINKS.route_key == "POST /payout-links"


def test_a_route_with_a_path_parameter_captures_it() -> None:
    assert WEBHOOK.match("POST", "/webhooks/acme/payout-links") == {"partner": "acme"}
    assert WEBHOOK.match("POST", "/webhooks/acme-corp.eu/payout-links") == {"partner": "acme-corp.eu"}
    assert WEBHOOK.match("POST", "/webhooks/a/b/payout-links") is None
    assert WEBHOOK.match("POST", "/webhooks//payout-links") is None
    assert WEBHOOK.match("PUT", "/webhooks/acme/payout-links") is None


def test_literal_characters_in_a_route_are_not_patterns() -> None:
    assert Route("GET", "/v1.0/links", jwt_protected=False).match("GET", "/v1x0/links") is None


# --- CORS --------------------------------------------------------------------------------------------------------

ORIGINS = ("https://app.example.test", "https://admin.example.test", "http://localhost:5173")


def _api_template(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "Parameters": {"Origins": {"Type": "CommaDelimitedList", "Default": ",".join(ORIGINS)}},
        "Resources": {"Api": {"Type": "AWS::Serverless::HttpApi", "Properties": properties}},
    }


def test_the_templates_cors_comes_from_the_apis_openapi_definition() -> None:
    """template.yaml puts CORS in the x-amazon-apigateway-cors extension of the API's DefinitionBody (where SAM
    leaves the parameter's !Ref for CloudFormation to resolve); the gateway reads it there."""
    cors = Cors.from_template(load_template(TEMPLATE_PATH))

    assert cors == Cors(
        allow_origins=("http://localhost:5173",),
        allow_methods=("GET", "POST", "DELETE", "OPTIONS"),
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=("idempotent-replayed", "retry-after", "apigw-requestid"),
        max_age=600,
    )


def test_cors_from_the_openapi_extension_resolves_a_comma_delimited_list_of_origins() -> None:
    template = _api_template(
        {
            "DefinitionBody": {
                "openapi": "3.0.1",
                "paths": {},
                "x-amazon-apigateway-cors": {
                    "allowOrigins": {"Ref": "Origins"},
                    "allowMethods": ["GET", "POST"],
                    "allowHeaders": ["authorization"],
                    "exposeHeaders": ["retry-after"],
                    "maxAge": 60,
                },
            }
        }
    )

    cors = Cors.from_template(template)

    assert cors == Cors(ORIGINS, ("GET", "POST"), ("authorization",), ("retry-after",), 60)
    for origin in ORIGINS:  # each origin of the list, not their comma-joined text
        assert cors.headers(origin, preflight=True)["access-control-allow-origin"] == origin
    assert cors.headers(",".join(ORIGINS), preflight=True) == {}


def test_cors_configuration_is_read_too_and_wins_over_the_extension_as_in_sam() -> None:
    template = _api_template(
        {
            "DefinitionBody": {
                "openapi": "3.0.1",
                "paths": {},
                "x-amazon-apigateway-cors": {"allowOrigins": ["https://body.example.test"], "maxAge": 60},
            },
            "CorsConfiguration": {"AllowOrigins": {"Ref": "Origins"}, "AllowMethods": ["GET"]},
        }
    )

    assert Cors.from_template(template) == Cors(ORIGINS, ("GET",), max_age=60)
    only_sam = _api_template({"CorsConfiguration": {"AllowOrigins": ["https://sam.example.test"], "MaxAge": 5}})
    assert Cors.from_template(only_sam) == Cors(("https://sam.example.test",), max_age=5)


def test_no_cors_anywhere_is_none_and_given_origins_replace_the_configured_ones() -> None:
    assert Cors.from_template(_api_template({"DefinitionBody": {"openapi": "3.0.1", "paths": {}}})) is None
    cors = Cors.from_template(load_template(TEMPLATE_PATH), allow_origins=["https://deployed.example.test"])
    assert cors is not None and cors.allow_origins == ("https://deployed.example.test",)
    assert cors.allow_methods == ("GET", "POST", "DELETE", "OPTIONS")


def test_build_event_is_a_payload_2_0_event() -> None:
    body = b'{"amount": 2500, "user_id": "user-7"}'

    event = event_for(
        PAYOUT_LINKS,
        headers={"content-type": "application/json", "idempotency-key": "k-1"},
        body=body,
        query="dry=1&x=",
    )

    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "POST /payout-links"
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/payout-links"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "198.51.100.7"
    assert event["requestContext"]["requestId"] == "req-42"
    assert event["headers"]["idempotency-key"] == "k-1"
    assert event["queryStringParameters"] == {"dry": "1", "x": ""}
    assert event["isBase64Encoded"] is False
    assert event["body"] == body.decode()
    assert "authorizer" not in event["requestContext"]  # no token, no claims
    json.dumps(event)  # what the Lambda runtime would serialize


def test_a_repeated_query_parameter_has_its_values_joined_by_commas_as_api_gateway_joins_them() -> None:
    event = event_for(PAYOUT_LINKS, query="limit=2&cursor=a%2Cb&limit=3&empty=")

    assert event["rawQueryString"] == "limit=2&cursor=a%2Cb&limit=3&empty="
    assert event["queryStringParameters"] == {"limit": "2,3", "cursor": "a,b", "empty": ""}


def test_build_event_passes_claims_as_strings() -> None:
    expires = int(time.time()) + 300
    claims = {
        "sub": "user-1",
        "exp": expires,
        "email_verified": True,
        "groups": ["payers", "admins"],
        "scope": "payouts:write payouts:read",
    }

    event = event_for(PAYOUT_LINKS, headers={"authorization": "Bearer a.b.c"}, claims=claims)

    jwt_context = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_context["claims"] == {
        "sub": "user-1",
        "exp": str(expires),
        "email_verified": "true",
        "groups": "[payers admins]",
        "scope": "payouts:write payouts:read",
    }
    assert jwt_context["scopes"] == ["payouts:write", "payouts:read"]
    assert frontend_caller(Request.from_event(event)) == "user:user-1"


@pytest.mark.parametrize("claims", [{"sub": None}, {"sub": False}, {"sub": 0}, {"sub": []}, {"sub": {"a": 1}}])
def test_claims_that_are_not_strings_reach_the_function_as_their_spelling_and_name_no_caller(claims):
    """The event carries what API Gateway makes of them; the function refuses such a subject (inbound.py)."""
    event = event_for(PAYOUT_LINKS, claims={**claims, "client_id": "app-9"})

    spelled = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    assert spelled in {"null", "false", "0", "[]", '{"a": 1}'}
    with pytest.raises(Unauthenticated):
        frontend_caller(Request.from_event(event))


def test_build_event_carries_no_claims_without_an_accepted_token() -> None:
    event = event_for(PAYOUT_LINKS, headers={"authorization": "Bearer a.b.c"})

    assert "authorizer" not in event["requestContext"]


def test_build_event_passes_no_claims_on_routes_without_the_authorizer() -> None:
    event = event_for(
        WEBHOOK,
        headers={"authorization": "Bearer a.b.c"},
        path="/webhooks/acme/payout-links",
        parameters={"partner": "acme"},
        claims={"sub": "user-1"},
    )

    assert "authorizer" not in event["requestContext"]
    assert event["pathParameters"] == {"partner": "acme"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", b"\x00\x01\xfe\xff"),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        ("application/json", b'{"memo": "\xff"}'),
        ("", b"plain bytes, no type"),
    ],
    ids=["octet-stream", "image", "JSON that is not UTF-8", "no content type"],
)
def test_build_event_base64_encodes_binary_bodies(content_type: str, body: bytes) -> None:
    headers = {"content-type": content_type} if content_type else {}

    event = event_for(PAYOUT_LINKS, headers=headers, body=body)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ],
)
def test_build_event_passes_text_bodies_as_text(content_type: str) -> None:
    event = event_for(PAYOUT_LINKS, headers={"content-type": content_type}, body='{"memo": "café"}'.encode())

    assert event["isBase64Encoded"] is False
    assert event["body"] == '{"memo": "café"}'


def test_build_event_without_a_body_has_none() -> None:
    event = event_for(PAYOUT_LINKS, headers={"content-type": "application/json"})

    assert "body" not in event
    assert event["isBase64Encoded"] is False
