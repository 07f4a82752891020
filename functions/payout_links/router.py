"""The router at the HTTP edge: an API Gateway HTTP API (payload 2.0) event in, its route's answer out.

API Gateway has matched the request to one of the template's routes before the function runs, and names it in the
event: `routeKey` ("GET /payout-links/{id}") and the path's values in `pathParameters` ({"id": "..."}). The
router looks the route key up in its table and hands the handler the request, path values included; it never
matches the path again. So the table's keys are the template's route keys, as the template writes them (a test
holds them equal), compared exactly, case included; and a path value is what API Gateway put in `pathParameters`,
which the router does not decode. An event whose route key the table lacks (one API Gateway does not send, such as
`$default`, which the template does not declare) gets the not-found answer.

Errors are turned into answers by handlers registered in one place, as with Powertools' `APIGatewayHttpResolver`;
this router does only that, which keeps Powertools' event-handler package (every resolver it has: AppSync,
Bedrock, VPC Lattice, ...) off the cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext


@dataclass(frozen=True)
class Request:
    """What a route reads from the event: header names are lower case (API Gateway sends them so for HTTP APIs)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: str | None
    is_base64_encoded: bool
    # The JWT's claims as the authorizer verified them; None on a route without the JWT authorizer.
    claims: Mapping[str, Any] | None
    context: LambdaContext | None = None
    # API Gateway's id of the request: the `apigw-requestid` header of the answer, and what the access log carries.
    request_id: str = ""
    # The query string's parameters, decoded; a parameter sent more than once has its values joined by commas, as
    # API Gateway joins them in `queryStringParameters`.
    query: Mapping[str, str] = field(default_factory=dict)
    # The route API Gateway matched, as the template declares it ("GET /payout-links/{id}"), and the path's values
    # by the names in its braces, as API Gateway passes them.
    route_key: str = ""
    path_parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Mapping[str, Any], context: LambdaContext | None = None) -> Request:
        request_context = event.get("requestContext") or {}
        authorizer = request_context.get("authorizer") or {}
        return cls(
            method=(request_context.get("http") or {}).get("method", ""),
            path=event.get("rawPath", ""),
            headers={name.lower(): value for name, value in (event.get("headers") or {}).items()},
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
            claims=(authorizer.get("jwt") or {}).get("claims"),
            context=context,
            request_id=request_context.get("requestId") or "",
            query=dict(event.get("queryStringParameters") or {}),
            route_key=event.get("routeKey") or "",
            path_parameters=dict(event.get("pathParameters") or {}),
        )

    @property
    def lambda_context(self) -> LambdaContext:
        """The invocation's context, which every request the router serves in Lambda has."""
        assert self.context is not None, "a request served by the router has its Lambda context"
        return self.context

    def remaining_millis(self) -> int:
        return self.lambda_context.get_remaining_time_in_millis()


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """The payload 2.0 answer API Gateway expects from the function."""
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": self.content_type, **self.headers},
            "body": self.body,
            "isBase64Encoded": False,
        }


type RouteHandler = Callable[[Request], Response]
type ErrorHandler = Callable[[Any, Request], Response]


class Router:
    """Routes by the event's route key, through a table of route key → handler, and errors by exception class
    (the most specific registered class wins)."""

    def __init__(self, routes: Mapping[str, RouteHandler]) -> None:
        self._routes = dict(routes)
        self._error_handlers: dict[type[BaseException], ErrorHandler] = {}
        self._not_found: Callable[[Request], Response] | None = None

    @property
    def route_keys(self) -> frozenset[str]:
        return frozenset(self._routes)

    def error_handler[E: BaseException](
        self, exception: type[E]
    ) -> Callable[[Callable[[E, Request], Response]], Callable[[E, Request], Response]]:
        def register(handler: Callable[[E, Request], Response]) -> Callable[[E, Request], Response]:
            self._error_handlers[exception] = handler
            return handler

        return register

    def not_found(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        self._not_found = handler
        return handler

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        request = Request.from_event(event, context)
        try:
            return self._dispatch(request).to_payload()
        except Exception as exc:
            return self._answer_error(exc, request).to_payload()

    def _dispatch(self, request: Request) -> Response:
        if handler := self._routes.get(request.route_key):
            return handler(request)
        if self._not_found is None:
            raise LookupError(f"no route {request.route_key!r} for {request.method} {request.path}")
        return self._not_found(request)

    def _answer_error(self, error: Exception, request: Request) -> Response:
        for cls in type(error).__mro__:
            if handler := self._error_handlers.get(cls):
                return handler(error, request)
        raise error
