"""A local stand-in for the API Gateway HTTP API: HTTP in, payload 2.0 events to the function, HTTP out.

Routes come from the template, so a route exists locally exactly when it exists in AWS. On routes behind the
JWT authorizer, the token is checked as API Gateway's JWT authorizer checks it (`jwt_authorizer`: its RSA signature
against the issuer's keys, found by OpenID discovery; its issuer, audience, expiry, `nbf` and `iat`), and only a
token it accepts reaches the function, its claims at `requestContext.authorizer.jwt.claims` as strings. A missing
or invalid token gets API Gateway's own `401 {"message":"Unauthorized"}`, a valid one without one of the route's
authorization scopes its `403 {"message":"Forbidden"}`, each with API Gateway's `www-authenticate`; the function
never runs for them. There is no way to turn the check off.

The API's CORS configuration applies as in AWS: the gateway answers preflight requests itself and adds the
CORS headers to every answer for an allowed origin, whatever the function sent.

Like API Gateway, it takes bursts of hundreds of connections (they queue for a free execution environment rather
than being reset) and never makes a caller wait for the function longer than the 30-second integration timeout:
then it answers `503 {"message":"Service Unavailable"}` itself, and an event that has not reached the function
by then never does. It does not throttle: the template's route throttles (429) apply only in AWS.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local_stack.core.jwt_authorizer import Authorized, JwtAuthorizer, Refused
from local_stack.core.template import resolve
from local_stack.core.workers import NotStarted

# HTTP APIs refuse bodies over 10 MB before any integration runs, and give up on an integration after 30 s.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_SECONDS = 30.0
# Connections a burst may open before any is accepted (socketserver's default is 5: a burst got resets).
LISTEN_BACKLOG = 1024
_TEXT_MEDIA_TYPES = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|x-www-form-urlencoded))", re.I)

# Runs an event: (event, request id, start_by), where start_by is the time.monotonic() time after which the event
# must not be handed to the function any more (raise instead).
Invoke = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the template: /items/{id}
    jwt_protected: bool
    # A token needs one of these; a route is still named by its method, path and authorizer alone.
    scopes: tuple[str, ...] = field(default=(), compare=False)
    # The logical id of its HttpApi; None for SAM's implicit API (an event without ApiId).
    api: str | None = field(default=None, compare=False)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


def routes_from_template(template: dict[str, Any], function: str | None = None) -> list[Route]:
    """The HttpApi routes of the function with logical id `function` (of every function when None)."""
    resources = template["Resources"]
    routes = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function" or function not in (None, name):
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            api = props["ApiId"]["Ref"] if "ApiId" in props else None
            api_properties = resources[api].get("Properties", {}) if api else {}
            default_authorizer = api_properties.get("Auth", {}).get("DefaultAuthorizer")
            authorizer = props.get("Auth", {}).get("Authorizer", default_authorizer)
            scopes = resolve(props.get("Auth", {}).get("AuthorizationScopes", []), template)
            routes.append(
                Route(
                    props["Method"].upper(),
                    props["Path"],
                    authorizer not in (None, "NONE"),
                    tuple(scopes),
                    api,
                )
            )
    return routes


# The CORS settings by their names in CorsConfiguration (SAM) and in x-amazon-apigateway-cors (OpenAPI).
_CORS_FIELDS = {
    "allow_origins": ("AllowOrigins", "allowOrigins"),
    "allow_methods": ("AllowMethods", "allowMethods"),
    "allow_headers": ("AllowHeaders", "allowHeaders"),
    "expose_headers": ("ExposeHeaders", "exposeHeaders"),
    "max_age": ("MaxAge", "maxAge"),
}


@dataclass(frozen=True)
class Cors:
    """An HTTP API's CORS configuration, applied as API Gateway applies it."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None

    @classmethod
    def from_template(
        cls, template: dict[str, Any], *, api: str | None = None, allow_origins: Sequence[str] | None = None
    ) -> Cors | None:
        """The CORS configuration of the template's HTTP API `api` (by default its first), None when it has none;
        `allow_origins` replaces the configured origins (what a deployment does by setting the parameter they come
        from).

        It is read where API Gateway gets it from: the `x-amazon-apigateway-cors` extension of the API's
        DefinitionBody, and the SAM property CorsConfiguration, whose settings SAM writes over the extension's."""
        for name, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Serverless::HttpApi" or api not in (None, name):
                continue
            properties = resource["Properties"]
            extension = properties.get("DefinitionBody", {}).get("x-amazon-apigateway-cors")
            configuration = properties.get("CorsConfiguration")
            if extension is None and configuration is None:
                return None
            settings: dict[str, Any] = {}
            for field_name, (sam_name, openapi_name) in _CORS_FIELDS.items():
                for source, name in ((extension, openapi_name), (configuration, sam_name)):
                    if source and name in source:
                        settings[field_name] = resolve(source[name], template)
            if allow_origins is not None:
                settings["allow_origins"] = allow_origins
            return cls(
                allow_origins=tuple(settings.get("allow_origins", ())),
                allow_methods=tuple(settings.get("allow_methods", ())),
                allow_headers=tuple(settings.get("allow_headers", ())),
                expose_headers=tuple(settings.get("expose_headers", ())),
                max_age=settings.get("max_age"),
            )
        return None

    def headers(self, origin: str | None, *, preflight: bool) -> dict[str, str]:
        """What API Gateway adds for a request from `origin`: for a preflight, what the browser may send; for
        any other answer, what it may read. Nothing for an origin that is not allowed."""
        if origin is None or not ({"*", origin} & set(self.allow_origins)):
            return {}
        headers = {"access-control-allow-origin": "*" if "*" in self.allow_origins else origin}
        if preflight:
            listed = {
                "access-control-allow-methods": self.allow_methods,
                "access-control-allow-headers": self.allow_headers,
            }
            if self.max_age is not None:
                headers["access-control-max-age"] = str(self.max_age)
        else:
            listed = {"access-control-expose-headers": self.expose_headers}
        headers.update({name: ",".join(values) for name, values in listed.items() if values})
        return headers


def _claim_as_string(value: Any) -> str:
    # HTTP APIs hand claims to the function as strings: numbers, booleans and null as their JSON spelling, arrays
    # as "[a b]" (as users of deployed APIs report; AWS does not document it). How an object is written is not
    # known: here, as JSON.
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]"
    return json.dumps(value)


def build_event(
    route: Route,
    path_parameters: dict[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    request_id: str,
    authorized: Authorized | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request; on a route behind the JWT authorizer, with
    the claims and scopes of the token it `authorized`."""
    now = datetime.now(UTC)
    is_text = _TEXT_MEDIA_TYPES.match(headers.get("content-type", "")) is not None
    try:
        text_body = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        text_body = None
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if route.jwt_protected and authorized is not None:
        request_context["authorizer"] = {
            "jwt": {
                "claims": {name: _claim_as_string(value) for name, value in authorized.claims.items()},
                "scopes": authorized.scopes,
            }
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": request_context,
        "isBase64Encoded": text_body is None and bool(body),
    }
    if raw_query:
        event["queryStringParameters"] = query_parameters(raw_query)
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text_body if text_body is not None else base64.b64encode(body).decode("ascii")
    return event


def query_parameters(raw_query: str) -> dict[str, str]:
    """`queryStringParameters` as API Gateway makes it: each name's values decoded, a repeated name's values
    joined by commas in their order."""
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


class LocalHttpApi(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        port: int,
        routes: list[Route],
        invoke: Invoke,
        *,
        cors: Cors | None = None,
        authorizer: JwtAuthorizer | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        if authorizer is None and any(route.jwt_protected for route in routes):
            raise ValueError("routes behind the JWT authorizer need one: give the authorizer")
        self.routes = routes
        self.invoke = invoke
        self.cors = cors
        self.authorizer = authorizer
        self.integration_timeout = integration_timeout
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: LocalHttpApi
    protocol_version = "HTTP/1.1"
    _cors_headers: dict[str, str]  # what API Gateway's CORS adds to the current answer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self, request_id: str) -> bytes | None:
        """The request's body, by its Content-Length or its chunks; None once a malformed length (400) or a body
        over the payload limit (413) has been answered, as API Gateway answers them itself."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size_line = self.rfile.readline(1024).split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_line):
                    self._gateway_answer(400, "Bad Request", request_id)
                    return None
                size = int(size_line, 16)
                if len(body) + size > MAX_PAYLOAD_BYTES:
                    self._gateway_answer(413, "Request Entity Too Large", request_id)
                    return None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline(1024)  # the CRLF after each chunk
        declared = self.headers.get("content-length")
        if declared is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,12}", declared.strip()):
            self._gateway_answer(400, "Bad Request", request_id)
            return None
        length = int(declared)
        if length > MAX_PAYLOAD_BYTES:
            self._gateway_answer(413, "Request Entity Too Large", request_id)
            return None
        return self.rfile.read(length) if length else b""

    def _gateway_answer(
        self, status: int, message: str, request_id: str, headers: dict[str, str] | None = None
    ) -> None:
        """An answer API Gateway gives itself, instead of the function's: `{"message": ...}` as JSON."""
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        self._send(status, {"content-type": "application/json", **(headers or {})}, body, request_id)

    def _dispatch(self) -> None:
        request_id = uuid.uuid4().hex[:16]
        url = urlsplit(self.path)
        cors = self.server.cors
        origin = self.headers.get("origin")
        self._cors_headers = cors.headers(origin, preflight=False) if cors else {}
        body = self._read_body(request_id)
        if body is None:  # refused, and answered
            self.close_connection = True
            return
        if cors and self.command == "OPTIONS" and origin and self.headers.get("access-control-request-method"):
            # A preflight: answered by the gateway, whatever the routes, and never seen by the function.
            self._cors_headers = cors.headers(origin, preflight=True)
            self._send(204, {}, b"", request_id)
            return
        for route in self.server.routes:
            path_parameters = route.match(self.command, url.path)
            if path_parameters is not None:
                break
        else:
            self._gateway_answer(404, "Not Found", request_id)
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():  # repeated headers are joined with commas, as HTTP APIs do
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        authorized = None
        if route.jwt_protected:  # the authorizer's refusal is API Gateway's answer: the function never runs
            assert self.server.authorizer is not None  # LocalHttpApi refuses such routes without one
            verdict = self.server.authorizer.authorize(headers.get("authorization"), route.scopes)
            if isinstance(verdict, Refused):
                challenge = {"www-authenticate": verdict.www_authenticate}
                self._gateway_answer(verdict.status, verdict.message, request_id, challenge)
                return
            authorized = verdict
        event = build_event(
            route,
            path_parameters,
            self.command,
            url.path,
            url.query,
            headers,
            body,
            self.client_address[0],
            request_id,
            authorized,
        )
        outcome = self._integrate(event, request_id)
        if outcome is None:  # no answer within the integration timeout: API Gateway's own
            self._gateway_answer(503, "Service Unavailable", request_id)
            return
        if isinstance(outcome, Exception):  # the function raised, crashed or timed out
            self._gateway_answer(500, "Internal Server Error", request_id)
            return
        response = outcome
        payload = response.get("body") or ""
        raw = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
        headers_out = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers_out[name.lower()] = ",".join(map(str, values))
        self._send(int(response.get("statusCode", 200)), headers_out, raw, request_id, response.get("cookies") or [])

    def _integrate(self, event: dict[str, Any], request_id: str) -> dict[str, Any] | Exception | None:
        """The function's answer, its failure, or None when neither came within the integration timeout (an
        invocation under way goes on, as a Lambda invocation does when API Gateway has given up on it)."""
        deadline = time.monotonic() + self.server.integration_timeout
        answers: queue.Queue[dict[str, Any] | Exception] = queue.Queue(maxsize=1)

        def invoke() -> None:
            try:
                answers.put(self.server.invoke(event, request_id, start_by=deadline))
            except Exception as exc:
                answers.put(exc)

        threading.Thread(target=invoke, name=f"integration-{request_id}", daemon=True).start()
        try:
            outcome = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        return None if isinstance(outcome, NotStarted) else outcome

    def __getattr__(self, name: str) -> Any:
        # Every method (GET, TRACE, QUERY, ...) goes through the routes, as in API Gateway: a method no route has
        # gets the gateway's 404, never http.server's 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, request_id: str, cookies: Sequence[str] = ()
    ) -> None:
        self.send_response(status)
        if self.server.cors:  # API Gateway's CORS headers replace any the function sent
            headers = {name: value for name, value in headers.items() if not name.startswith("access-control-")}
            headers.update(self._cors_headers)
        for name, value in headers.items():
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("set-cookie", cookie)
        self.send_header("apigw-requestid", request_id)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
