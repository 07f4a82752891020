"""An HTTP proxy in front of the moto server that fails chosen AWS operations the way AWS does.

AWS JSON-protocol calls (DynamoDB, Secrets Manager) name their operation in the `X-Amz-Target` header, so a
rule such as `fail("DynamoDB_20120810.UpdateItem", count=3)` answers exactly those calls with an AWS error
while every other call reaches moto unchanged. The function's boto3 clients are pointed at the proxy with
`AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

THROTTLED = ("ProvisionedThroughputExceededException", 400)
SERVICE_UNAVAILABLE = ("ServiceUnavailable", 503)


@dataclass
class _Rule:
    target: str
    error: str
    status: int
    remaining: int


class AwsFaultProxy:
    def __init__(self, upstream_endpoint: str) -> None:
        upstream = urlsplit(upstream_endpoint)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.calls: list[str] = []  # every operation seen, failed or forwarded
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, target: str, *, count: int = 1_000_000, error: tuple[str, int] = THROTTLED) -> None:
        """Answer the next `count` calls of `target` (e.g. "DynamoDB_20120810.PutItem") with `error`."""
        with self._lock:
            self._rules.append(_Rule(target, error[0], error[1], count))

    def heal(self) -> None:
        with self._lock:
            self._rules.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_rule(self, target: str) -> _Rule | None:
        with self._lock:
            self.calls.append(target)
            for rule in self._rules:
                if rule.target == target and rule.remaining > 0:
                    rule.remaining -= 1
                    return rule
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                rule = proxy._take_rule(self.headers.get("x-amz-target", ""))
                if rule is not None:
                    error = json.dumps({"__type": rule.error, "message": "injected by the test"}).encode()
                    self._answer(rule.status, {"content-type": "application/x-amz-json-1.0"}, error)
                    return
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=10)
                try:
                    connection.request("POST", self.path, body=body, headers=dict(self.headers.items()))
                    response = connection.getresponse()
                    self._answer(response.status, dict(response.getheaders()), response.read())
                finally:
                    connection.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
