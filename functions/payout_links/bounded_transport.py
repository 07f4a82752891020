"""An httpx client whose requests end by a wall-clock deadline, not only by per-read timeouts.

httpx's timeouts bound each socket operation: an upstream that sends its headers and then one byte a second never
trips a 1-second read timeout and holds the request for as long as it likes. Here every connect, read and write
waits at most until the end of the current `within(seconds)` block, so an attempt ends on time however the
upstream dribbles, and so does resolving the upstream's name. Past the deadline the operation fails as the
matching httpx timeout (`ConnectTimeout`, `ReadTimeout`, `WriteTimeout`).

It enforces the deadline it is given and sets none: the request's time budget is budget.py's (service.py derives
the upstream deadline from it, and upstream.py bounds each attempt by what is left).

The bound sits in httpcore's network backend, the layer that owns the sockets; httpx has no public way to pass
one in, so `deadline_client` builds its transport's connection pool itself (a test checks that it is used).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("upstream_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Bound every network operation in the block: all of them end `seconds` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


# Name resolution blocks in the C library with no timeout of its own: it runs here, waited for at most the time
# left. One thread is enough for a container that makes one request at a time.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="resolver")
_SMALLEST_TIMEOUT = 0.001


def _resolve(host: str, port: int, timeout: float | None) -> str:
    """The first address of `host` (an IP literal is its own), found within `timeout`."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return str(lookup.result(timeout=timeout)[0][4][0])
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from None


class BoundedBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every stream it opens bounded by the current deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        started = time.monotonic()
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        address = _resolve(host, port, timeout)
        if timeout is not None:
            timeout = max(timeout - (time.monotonic() - started), _SMALLEST_TIMEOUT)
        return _BoundedStream(self._backend.connect_tcp(address, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def drop_connections(client: httpx.Client) -> None:
    """Close the client's open connections and keep the client usable: its next request opens a new one."""
    transport = client._transport
    assert isinstance(transport, httpx.HTTPTransport), "a client made by deadline_client"
    transport._pool.close()


def deadline_client(*, limits: httpx.Limits, **client_options: Any) -> httpx.Client:
    """An `httpx.Client` like any other, whose connections are opened through `BoundedBackend`."""
    # One TLS context (loading the CA bundle takes about 20 ms), given to the transport and to its pool.
    ssl_context = httpx.create_ssl_context()
    transport = httpx.HTTPTransport(verify=ssl_context, limits=limits)
    transport._pool = httpcore.ConnectionPool(  # the one way to choose the network backend
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=BoundedBackend(),
    )
    return httpx.Client(transport=transport, **client_options)
