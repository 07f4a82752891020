"""An HTTP proxy in front of the moto server that fails chosen AWS operations the way AWS does.

AWS JSON-protocol calls (DynamoDB, Secrets Manager) name their operation in the `X-Amz-Target` header, so a
rule such as `fail("DynamoDB_20120810.UpdateItem", count=3)` answers exactly those calls with an AWS error
while every other call reaches moto unchanged; `stall(...)` makes them slow instead, before or after moto
has acted on them. The function's boto3 clients are pointed at the proxy with
`AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

THROTTLED = ("ProvisionedThroughputExceededException", 400)
SERVICE_UNAVAILABLE = ("ServiceUnavailable", 503)


@dataclass
class _Rule:
    """What happens to the next `remaining` calls of `target`: an AWS `error` instead of moto's answer, or,
    without one, moto's answer `stall_seconds` late (held after moto has acted when `stall_after_forward`)."""

    target: str
    remaining: int
    error: tuple[str, int] | None = None
    stall_seconds: float = 0.0
    stall_after_forward: bool = False


class AwsFaultProxy:
    def __init__(self, upstream_endpoint: str) -> None:
        upstream = urlsplit(upstream_endpoint)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a call has been dealt with
        self._in_flight = 0
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
            self._rules.append(_Rule(target, count, error=error))

    def stall(self, target: str, *, seconds: float, count: int = 1_000_000, forward: bool = False) -> None:
        """Make the next `count` calls of `target` slow. By default a call waits `seconds` and then reaches
        moto as usual (a slow dependency; the call still lands, even if its client gave up meanwhile); with
        `forward` it reaches moto at once and its answer is held `seconds` (a write that landed, answered late)."""
        with self._lock:
            self._rules.append(_Rule(target, count, stall_seconds=seconds, stall_after_forward=forward))

    def heal(self) -> None:
        """Drop every rule, failures and stalls alike."""
        with self._lock:
            self._rules.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is being handled: a stalled call has reached moto (and been answered, or found its
        client gone). False if that takes longer than `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _end(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

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
                proxy._begin()
                try:
                    self._handle()
                finally:
                    proxy._end()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                rule = proxy._take_rule(self.headers.get("x-amz-target", ""))
                if rule is None:
                    self._answer(*self._forward(body))
                elif rule.error is not None:
                    code, status = rule.error
                    error = json.dumps({"__type": code, "message": "injected by the test"}).encode()
                    self._answer(status, {"content-type": "application/x-amz-json-1.0"}, error)
                elif rule.stall_after_forward:
                    answer = self._forward(body)
                    time.sleep(rule.stall_seconds)
                    self._answer_if_still_wanted(*answer)
                else:
                    time.sleep(rule.stall_seconds)
                    self._answer_if_still_wanted(*self._forward(body))

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=10)
                try:
                    connection.request("POST", self.path, body=body, headers=dict(self.headers.items()))
                    response = connection.getresponse()
                    return response.status, dict(response.getheaders()), response.read()
                finally:
                    connection.close()

            def _answer_if_still_wanted(self, status: int, headers: dict[str, str], body: bytes) -> None:
                """After a stall the client may have given up and hung up: that is the point, not an error."""
                try:
                    self._answer(status, headers, body)
                except OSError:
                    self.close_connection = True

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
