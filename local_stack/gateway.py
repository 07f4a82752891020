"""A local stand-in for the API Gateway HTTP API: HTTP in, payload 2.0 events to the function, HTTP out.

Routes come from `template.yaml`, so a route exists locally exactly when it exists in AWS. On routes behind the
JWT authorizer, the bearer token is decoded and its claims passed at `requestContext.authorizer.jwt.claims`;
its signature is NOT checked here (in AWS, API Gateway verifies it before the function runs). A missing,
undecodable or expired token reaches the function without claims, and the function answers 401.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local_stack.template import load_template

# HTTP APIs refuse bodies over 10 MB before any integration runs.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
_TEXT_MEDIA_TYPES = re.compile(r"^(text/|application/([\w.+-]*\+)?(json|xml|x-www-form-urlencoded))", re.I)

Invoke = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the template: /webhooks/{partner}/payout-links
    jwt_protected: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


def routes_from_template(template: dict[str, Any] | None = None) -> list[Route]:
    template = template or load_template()
    resources = template["Resources"]
    apis = {name: res for name, res in resources.items() if res["Type"] == "AWS::Serverless::HttpApi"}
    routes = []
    for resource in resources.values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            api = apis[props["ApiId"]["Ref"]]
            default_authorizer = api["Properties"].get("Auth", {}).get("DefaultAuthorizer")
            authorizer = props.get("Auth", {}).get("Authorizer", default_authorizer)
            routes.append(Route(props["Method"].upper(), props["Path"], authorizer not in (None, "NONE")))
    return routes


def jwt_claims(authorization: str | None) -> dict[str, Any] | None:
    """The claims of an unexpired bearer JWT, decoded without checking the signature; None otherwise."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    parts = authorization[7:].strip().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time():
        return None
    return claims


def _claim_as_string(value: Any) -> str:
    # HTTP APIs hand claims to the function as strings; arrays arrive as "[a b]".
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
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request."""
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
    if route.jwt_protected and (claims := jwt_claims(headers.get("authorization"))) is not None:
        scopes = claims.get("scope", "")
        request_context["authorizer"] = {
            "jwt": {
                "claims": {name: _claim_as_string(value) for name, value in claims.items()},
                "scopes": scopes.split() if isinstance(scopes, str) else None,
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
        event["queryStringParameters"] = dict(parse_qsl(raw_query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text_body if text_body is not None else base64.b64encode(body).decode("ascii")
    return event


class LocalHttpApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, routes: list[Route], invoke: Invoke) -> None:
        self.routes = routes
        self.invoke = invoke
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: LocalHttpApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        request_id = uuid.uuid4().hex[:16]
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self._send(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}', request_id)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        for route in self.server.routes:
            path_parameters = route.match(self.command, url.path)
            if path_parameters is not None:
                break
        else:
            self._send(404, {"content-type": "application/json"}, b'{"message":"Not Found"}', request_id)
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():  # repeated headers are joined with commas, as HTTP APIs do
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        event = build_event(
            route, path_parameters, self.command, url.path, url.query, headers, body, self.client_address[0], request_id
        )
        try:
            response = self.server.invoke(event, request_id)
        except Exception:  # the function raised, crashed or timed out
            self._send(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}', request_id)
            return
        payload = response.get("body") or ""
        raw = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode("utf-8")
        headers_out = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers_out[name.lower()] = ",".join(map(str, values))
        self._send(int(response.get("statusCode", 200)), headers_out, raw, request_id, response.get("cookies") or [])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, request_id: str, cookies: list[str] = ()
    ) -> None:
        self.send_response(status)
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
