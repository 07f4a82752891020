"""Write `openapi.json`, the OpenAPI 3.1 description of the API, from the models that validate the requests and
shape the answers (`payout_links.models`) and from the problems the function can answer (`payout_links.problems`).

Offline only: the function serves the committed document and never imports this script, nor Powertools' OpenAPI
models, which would cost its cold start. `make openapi` runs it; a unit test fails when the committed files are
stale. It writes two identical files: `openapi.json` at the top of the repository, for readers and tools, and
`functions/payout_links/openapi.json`, which `sam build` packages with the function (a build copies only
`functions/`).
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from payout_links import problems
from payout_links.credentials import PARTNER_NAME
from payout_links.models import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    CreatePayoutLinkRequest,
    PartnerEvent,
    PayoutLink,
    PayoutLinkList,
    ProblemDetails,
)
from payout_links.webhooks import TOLERANCE_SECONDS

ROOT = Path(__file__).resolve().parent.parent

OUTPUTS = (ROOT / "openapi.json", ROOT / "functions" / "payout_links" / "openapi.json")

PROBLEM_JSON = "application/problem+json"
SCHEMAS = "#/components/schemas/"
RESPONSES = "#/components/responses/"

# Where the API answers. First the API that serves this document, relative to it: what the OpenAPI default is
# without `servers`, so that the /docs page's "Try it out" and a fuzzer that reads the document from a stack keep
# calling that stack. Then `make run`'s local stack, at its default port, and a deployed stack, as its `ApiUrl`
# output names it (tests/unit/test_openapi.py holds both to the local stack and the template).
SERVERS = [
    {"url": "/", "description": "The API that serves this document (`GET /openapi.json`)."},
    {"url": "http://127.0.0.1:3000", "description": "`make run`: the local stack, at its default `PORT`."},
    {
        "url": "https://{apiId}.execute-api.{region}.amazonaws.com",
        "description": "A deployed stack: its `ApiUrl` output.",
        "variables": {
            "apiId": {"default": "abc123", "description": "The stack's HTTP API id, the first label of `ApiUrl`."},
            "region": {"default": "us-east-1", "description": "The AWS region the stack is deployed in."},
        },
    },
]

# Answers API Gateway gives itself, before or instead of the function, as `{"message": "..."}`.
GATEWAY_ANSWERS = {
    401: "API Gateway: no valid bearer token (`Unauthorized`).",
    403: "API Gateway: the token lacks the required scope (`Forbidden`).",
    413: "API Gateway: the body is over 10 MB.",
    429: "API Gateway: the route's throttle is exceeded (`Too Many Requests`); no `Retry-After`.",
    500: "API Gateway: the function crashed or timed out (`Internal Server Error`).",
}
# The challenge API Gateway's JWT authorizer sends with its own 401 and 403 (docs/api.md, Errors).
GATEWAY_CHALLENGES = {
    401: 'API Gateway\'s challenge with its own 401: `Bearer` when there is no token, `Bearer scope="" '
    'error="invalid_token" error_description="..."` for an invalid one. The function\'s problem has none.',
    403: 'API Gateway\'s challenge: `Bearer scope="..." error="insufficient_scope" error_description="expected '
    "scopes: [...]\"`, naming the route's scopes.",
}
# Statuses whose problems always carry `Retry-After`; API Gateway's own 429 has none.
RETRY_AFTER_REQUIRED = {409, 503}

# What the function can answer on either POST route (a partner's bad signature is a 401 too).
CREATE_PROBLEMS = (400, 401, 409, 413, 415, 422, 429, 500, 502, 503, 504)
# What it can answer when a frontend reads or cancels a link; only a cancel can be a 409 (`not-cancelable`).
READ_PROBLEMS = (401, 404, 429, 500, 502, 503, 504)
CANCEL_PROBLEMS = (*READ_PROBLEMS, 409)
# What it can answer when a frontend lists its links: no upstream is asked, so none of the upstream's problems.
LIST_PROBLEMS = (400, 401, 422, 500, 503)
# A status whose problems differ between operations: each operation names the one it can answer, or None for
# API Gateway's answer alone (a list is never rate limited by the upstream, only throttled by API Gateway).
LIFECYCLE_ONLY: dict[int, type[problems.Problem] | None] = {409: problems.NotCancelable}
LIST_ONLY: dict[int, type[problems.Problem] | None] = {
    400: problems.InvalidCursor,
    422: problems.ValidationFailed,
    429: None,
}
# Problems only some operations answer: left out of the responses the others share.
OPERATION_ONLY = {problems.NotCancelable, problems.InvalidCursor}


def build_document() -> dict[str, Any]:
    """The OpenAPI document, as a JSON-ready mapping."""
    _, definitions = models_json_schema(
        [
            (CreatePayoutLinkRequest, "validation"),
            (PartnerEvent, "validation"),
            (PayoutLink, "serialization"),
            (PayoutLinkList, "serialization"),
            (ProblemDetails, "serialization"),
        ],
        ref_template=SCHEMAS + "{model}",
    )
    definitions["$defs"]["ProblemDetails"]["properties"]["type"] = _problem_type_schema(
        definitions["$defs"]["ProblemDetails"]["properties"]["type"]
    )
    schemas = {
        **definitions["$defs"],
        "GatewayMessage": {
            "type": "object",
            "description": "An answer of API Gateway itself, given before or instead of the function's.",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        },
    }
    responses: dict[str, Any] = {}  # filled as the operations refer to them
    paths = {
        "/payout-links": {"post": _create_operation(responses), "get": _list_operation(responses)},
        "/payout-links/{id}": {
            "get": _lifecycle_operation(
                "getPayoutLink",
                "Read a payout link you created, as the payout provider has it now.",
                READ_PROBLEMS,
                responses,
            ),
            "delete": _lifecycle_operation(
                "cancelPayoutLink",
                "Cancel a payout link you created, unless it was claimed, reversed or has expired.",
                CANCEL_PROBLEMS,
                responses,
            ),
        },
        "/webhooks/{partner}/payout-links": {"post": _partner_operation(responses)},
        "/openapi.json": {
            "get": _docs_operation("getOpenApiDocument", "This document.", "application/json", responses)
        },
        "/docs": {
            "get": _docs_operation("getApiDocs", "Interactive documentation of this API.", "text/html", responses)
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "payout-link-proxy",
            "version": _project_version(),
            "description": (
                "Creates Dots payout links exactly once per intent, for frontends (JWT) and partners (Standard "
                "Webhooks signatures). Every error the function answers is RFC 9457 `application/problem+json`."
            ),
        },
        "servers": SERVERS,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearerJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "An access token from the deployment's issuer (`JwtIssuer`) for its audience (`JwtAudience`). "
                        "In `scope` or `scp` it carries `RequiredScope` (default `payouts:write`) to create and "
                        "cancel, and `ReadScope` (default `payouts:read`) or `RequiredScope` to read. API Gateway "
                        "verifies it."
                    ),
                }
            },
            "responses": dict(sorted(responses.items())),
        },
    }


def _create_operation(components: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "createPayoutLink",
        "summary": "Create a payout link, exactly once per idempotency key (frontends).",
        "security": [{"bearerJwt": []}],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "1-255 visible ASCII characters, bare or as a quoted string. Required unless the body carries "
                    "`idempotency_key`; when both are sent they must be equal. Keys are scoped by caller (the "
                    "token's `sub`, or `client_id`)."
                ),
                "schema": {"type": "string", "pattern": r'^(?:[\x21-\x7e]{1,255}|"[\x21-\x7e]{1,255}")$'},
                "example": "8e03978e-40d5-43e8-bc93-6894a57f9324",
            }
        ],
        "requestBody": _json_body("CreatePayoutLinkRequest"),
        # API Gateway's JWT authorizer answers 401 and 403 itself.
        "responses": {"201": _created(), **_error_refs(CREATE_PROBLEMS, (401, 403, 413, 429, 500), components)},
    }


def _list_operation(components: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "listPayoutLinks",
        "summary": "List the payout links you created, newest first.",
        "description": (
            "Only the links the caller created through this API (the same token `sub`, or `client_id` for a token "
            "without one) whose create completed, as the proxy recorded them: read a link for its current status. "
            "One page at a time: send `next_cursor` back as `cursor` until it is null. A page may hold fewer than "
            "`limit` links, even none, and still have a `next_cursor`. A link appears in the list shortly after "
            "its create answered (the index is eventually consistent). The answer is never cached "
            "(`Cache-Control: no-store`)."
        ),
        "security": [{"bearerJwt": []}],
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"How many links a page holds at most: 1 to {MAX_LIST_LIMIT}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": DEFAULT_LIST_LIMIT},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": (
                    "The `next_cursor` of the page before, as it was given; absent for the first page. A cursor is "
                    "valid only for the caller it was given to: any other is `400 invalid-cursor`."
                ),
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            },
        ],
        "responses": {
            "200": {
                "description": "A page of the caller's links, newest first.",
                "headers": {
                    "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
                },
                "content": {"application/json": {"schema": {"$ref": SCHEMAS + "PayoutLinkList"}}},
            },
            **_error_refs(LIST_PROBLEMS, (401, 403, 429, 500), components, only=LIST_ONLY),
        },
    }


def _lifecycle_operation(
    operation_id: str, summary: str, statuses: tuple[int, ...], components: dict[str, Any]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": (
            "Only the caller that created the link through this API (the same token `sub`, or `client_id` for a "
            "token without one) sees it. Any other id (another caller's link, a partner's, a link made at the "
            "payout provider directly, one whose create has not completed, an unknown or malformed id) gets the "
            "same 404, and the payout provider is not asked. The answer is never cached (`Cache-Control: "
            "no-store`). Repeating the request is safe."
        ),
        "security": [{"bearerJwt": []}],
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The payout link's `id`, from the 201 that created it.",
                # The grammar without its lookahead (no `.` or `..` alone), which not every fuzzer can generate.
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{1,128}$"},
                "example": "3f2b8c1e-5a4d-4e8f-9b7a-1c2d3e4f5a6b",
            }
        ],
        "responses": {
            "200": {
                "description": "The payout link, normalized like the 201 of a create"
                + ("; its status is `canceled`." if operation_id == "cancelPayoutLink" else "."),
                "headers": {
                    "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
                },
                "content": {"application/json": {"schema": {"$ref": SCHEMAS + "PayoutLink"}}},
            },
            **_error_refs(statuses, (401, 403, 429, 500), components, only=LIFECYCLE_ONLY),
        },
    }


def _partner_operation(components: dict[str, Any]) -> dict[str, Any]:
    def header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": True, "description": description, "schema": schema}

    return {
        "operationId": "receivePartnerEvent",
        "summary": "Create a payout link from a partner's signed `payout_link.create` event.",
        "description": (
            "Signed per Standard Webhooks with one of the partner's secrets. The `svix-id`, `svix-timestamp` and "
            "`svix-signature` names are accepted in place of the `webhook-*` ones. The idempotency key is the "
            "`webhook-id`: re-deliver with the same id to get the same link."
        ),
        "security": [],
        "parameters": [
            {
                "name": "partner",
                "in": "path",
                "required": True,
                "description": "The partner's name, as onboarded.",
                "schema": {"type": "string", "pattern": f"^{PARTNER_NAME.pattern}$"},
            },
            header("webhook-id", "The event's id; also its idempotency key.", {"type": "string"}),
            header(
                "webhook-timestamp",
                f"Unix seconds; within {TOLERANCE_SECONDS // 60} minutes of the proxy's clock.",
                {"type": "string", "pattern": "^[0-9]{1,12}$"},
            ),
            header(
                "webhook-signature",
                'Space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` entries; any match passes.',
                {"type": "string"},
            ),
        ],
        "requestBody": _json_body("PartnerEvent"),
        "responses": {"201": _created(), **_error_refs(CREATE_PROBLEMS, (413, 429, 500), components)},
    }


def _docs_operation(operation_id: str, summary: str, media_type: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object"} if media_type == "application/json" else {"type": "string"}
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": "Served only where the stack was deployed with `EnableApiDocs=true`; 404 otherwise.",
        "security": [],
        "responses": {
            "200": {"description": summary, "content": {media_type: {"schema": schema}}},
            **_error_refs((404,), (), components),
        },
    }


def problem_types() -> list[str]:
    """The `type` of every problem the function can answer, one per kind (`problem_classes`), sorted."""
    return sorted(problems.PROBLEM_TYPE_PREFIX + problem.slug for problem in problem_classes())


def _problem_type_schema(generated: dict[str, Any]) -> dict[str, Any]:
    """The problem's `type` as an enum of every type the function answers, in place of the model's pattern (which
    validates the same values at run time): a generated client gets the list, not a bare string."""
    schema = {name: value for name, value in generated.items() if name != "pattern"}
    return {**schema, "enum": problem_types()}


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": SCHEMAS + schema}}}}


def _created() -> dict[str, Any]:
    return {
        "description": "The payout link, created now or (with `Idempotent-Replayed: true`) replayed.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "Present on a replay: the stored answer of the first request with this key.",
                "required": False,
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + "PayoutLink"}}},
    }


def _error_refs(
    statuses: tuple[int, ...],
    gateway: tuple[int, ...],
    components: dict[str, Any],
    only: dict[int, type[problems.Problem] | None] | None = None,
) -> dict[str, Any]:
    """The error responses of an operation, as references to reusable responses that are added to `components`
    on first use: `404` holds the function's problems with that status, `401-gateway` API Gateway's own answer
    too, `409-not-cancelable` the one problem `only` names for that status, and `429-gateway-only` API Gateway's
    answer alone (`only` names None for it)."""
    only = only or {}
    refs = {}
    for status in sorted(set(statuses) | set(gateway)):
        name = f"{status}-gateway" if status in gateway else str(status)
        classes = [p for p in problem_classes() if p.status == status and p not in OPERATION_ONLY]
        if status in only:
            named = only[status]
            name, classes = (f"{status}-gateway-only", []) if named is None else (f"{status}-{named.slug}", [named])
        if name not in components:
            components[name] = _error_response(status, classes, gateway=status in gateway)
        refs[str(status)] = {"$ref": RESPONSES + name}
    return refs


def _error_response(status: int, classes: list[type[problems.Problem]], *, gateway: bool) -> dict[str, Any]:
    descriptions = [f"`{problem.slug}`: {problem.title}." for problem in classes]
    content: dict[str, Any] = {}
    if classes:
        content[PROBLEM_JSON] = {"schema": {"$ref": SCHEMAS + "ProblemDetails"}}
    if gateway:
        descriptions.append(GATEWAY_ANSWERS[status])
        content["application/json"] = {"schema": {"$ref": SCHEMAS + "GatewayMessage"}}
    response: dict[str, Any] = {"description": " ".join(descriptions), "content": content}
    if gateway and status in GATEWAY_CHALLENGES:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": GATEWAY_CHALLENGES[status],
                "required": status == 403,
                "schema": {"type": "string"},
            }
        }
    if any(problem.retry_after_when_bound for problem in classes):
        response["headers"] = {
            "Retry-After": {
                "description": 'On a create whose key stays bound (`key_state: "bound"`; the proxy settles it): '
                "seconds to wait before retrying with the same key and body; the payout provider's own delay where "
                f"it gave one, {problems.BOUND_RETRY_AFTER_SECONDS} otherwise.",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    if any(problem.retry_after is not None for problem in classes):
        always = status in RETRY_AFTER_REQUIRED
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying (a create: with the same idempotency key)."
                + ("" if always else " Absent on API Gateway's own throttling answer."),
                "required": always,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def problem_classes() -> list[type[problems.Problem]]:
    """The problems the function raises: `Problem` (a 500) and its subclasses in `payout_links.problems`, each
    kind once. A refinement that declares no slug of its own (a webhook's `SignatureRejected`, a `LinkNotFound`)
    is answered as its parent, whose status and slug it shares: it is not another kind."""
    found, pending = [problems.Problem], [problems.Problem]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__ == problems.__name__ and "slug" in vars(subclass):
                found.append(subclass)
            pending.append(subclass)
    return found


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def render() -> str:
    return json.dumps(build_document(), indent=2) + "\n"


def main() -> int:
    text = render()
    for path in OUTPUTS:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
