"""The HTTP side of the emulator: a threading server on loopback, and the handler that reads, routes and answers.

The handler carries out a fault's disruption (delay, drop, its own answer, a trickled answer); everything else it
asks of the emulator it serves, through `Served`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import sys
import threading
import time
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from local_stack.dots_emulator import control
from local_stack.dots_emulator.api import (
    UNREADABLE,
    ApiError,
    Json,
    Reply,
    Route,
    error_reply,
    parse_json,
    payout_route,
)
from local_stack.dots_emulator.control import CONTROL_PREFIX
from local_stack.dots_emulator.faults import Fault

MAX_BODY_BYTES = 1 << 20

# serve_forever() only notices shutdown() between polls; a short poll keeps stop() quick.
_POLL_INTERVAL_SECONDS = 0.05


class Served(control.Controlled, Protocol):
    """The emulator as the server sees it: the control API's methods, and these three for the payout-link API."""

    def count_connection(self) -> None: ...

    def payout_request(self, route: Route, request: Json) -> AbstractContextManager[Fault | None]: ...

    def answer_payout(
        self,
        route: Route,
        authorization: str | None,
        body: Any,
        link_overrides: Json | None = None,
        answer_link: str | None = None,
    ) -> Reply: ...


def loopback_host(host: str) -> str:
    """The IP literal to bind for `host`; anything that is not loopback is refused."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the Dots emulator only binds a loopback address, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"the Dots emulator only binds a loopback address, not {host!r}")
    return str(address)


class EmulatorServer(ThreadingHTTPServer):
    """Serves one emulator, a thread per connection, from `start` until `stop`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Served) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._lock = threading.Lock()
        self._open_connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name=f"dots-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        # Idle keep-alive connections would otherwise keep their handler threads waiting.
        self._close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.socket.getsockname()[:2]  # what TCPServer keeps as server_address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are expected here, not errors.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def connection_opened(self, connection: socket.socket) -> None:
        self.emulator.count_connection()
        with self._lock:
            self._open_connections.add(connection)

    def connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open_connections.discard(connection)

    def _close_open_connections(self) -> None:
        with self._lock:
            connections = list(self._open_connections)
            self._open_connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):  # the client already went away
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: EmulatorServer

    @property
    def emulator(self) -> Served:
        return self.server.emulator

    def setup(self) -> None:
        super().setup()
        # One handler per TCP connection, so this counts connections, not requests.
        self.server.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the local stack have their own logs."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            raw = self._read_body()
        except ApiError as error:
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._send(error.reply())
            return
        path = urlsplit(self.path).path
        route = payout_route(self.command, path)
        if route is not None:
            self._payout_request(route, path, raw)
        elif path.startswith(CONTROL_PREFIX):
            name = path.removeprefix(CONTROL_PREFIX)
            body = parse_json(raw) if raw else None
            self._send(control.answer(self.emulator, self.command, name, body))
        else:
            self._send(error_reply(404, "Not found"))

    def _read_body(self) -> bytes:
        """Always consume the body, so the next request on a keep-alive connection parses."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, "Send a Content-Length; chunked bodies are not supported")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "Invalid Content-Length") from None
        if length < 0:
            raise ApiError(400, "Invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise ApiError(413, "Body too large")
        return self.rfile.read(length)

    def _payout_request(self, route: Route, path: str, raw: bytes) -> None:
        """A create, read or cancel: the next fault, then the real action and answer (or not, as it says)."""
        body = parse_json(raw)
        request = {
            "method": self.command,
            "path": path,
            "headers": self._recorded_headers(),
            "body": None if body is UNREADABLE else body,
        }
        # The request is in flight until its last byte is out (after a trickle too) or the client is gone.
        with self.emulator.payout_request(route, request) as fault:
            if fault is not None and not fault.after_create and self._disrupt(fault):
                return
            overrides = fault.link_overrides if fault is not None else None
            answer_link = fault.answer_link if fault is not None else None
            reply = self.emulator.answer_payout(route, self.headers.get("Authorization"), body, overrides, answer_link)
            if fault is not None and fault.after_create and self._disrupt(fault):
                return
            if fault is not None and fault.trickle_seconds is not None:
                self._trickle(reply, fault.trickle_seconds)
            else:
                self._send(reply)

    def _disrupt(self, fault: Fault) -> bool:
        """Delay, then drop or answer as `fault` says; True when the request has been dealt with."""
        time.sleep(fault.delay_seconds)
        if fault.drop:
            self._drop()
            return True
        if fault.status is not None:
            self._send(fault.reply())
            return True
        return False

    def _recorded_headers(self) -> dict[str, str]:
        return {
            name.lower(): "<redacted>" if name.lower() == "authorization" else value
            for name, value in self.headers.items()
        }

    def _drop(self) -> None:
        """Hang up without answering, the way a lost response looks to the client."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client already went away
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, reply: Reply) -> None:
        self._send_head(reply)
        self.wfile.write(reply.payload)

    def _trickle(self, reply: Reply, seconds_per_byte: float) -> None:
        """Send the head at once, then the body one byte per `seconds_per_byte`, so that a client with a
        per-read timeout never times out while the whole answer takes len(body) * seconds_per_byte.
        A client that hung up makes the next write (or the one after) fail, which ends the trickle."""
        try:
            self._send_head(reply)
            for index in range(len(reply.payload)):
                time.sleep(seconds_per_byte)
                self.wfile.write(reply.payload[index : index + 1])
        except OSError:  # the client gave up or the emulator is stopping
            self.close_connection = True

    def _send_head(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.payload)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")  # so a keep-alive client does not reuse it
        self.end_headers()
