"""An embedded emulator of the Dots payout-link API.

The local stack uses it as the default upstream, and the tests use it as a real HTTP upstream
whose answers can be delayed, trickled a byte at a time, altered, replaced or dropped on demand
(see `DotsEmulator.inject`).
It only ever binds a loopback address: it accepts any request from anyone who can reach it.

The payout-link API (Basic auth, answers shaped by `set_shape`):
- `POST /api/v2/payout-links` creates a link (or replays the one made under the same idempotency key);
- `GET /api/v2/payout-links/{id}` retrieves a link;
- `DELETE /api/v2/payout-links/{id}` cancels a link whose status allows it. How a refusal looks (400 or 409,
  and its text) is the emulator's choice: the real API does not document it, so no client should rely on it.
Every such request counts in `stats()` and takes the next queued fault, whatever its method.

The control API, under `/_emulator/` (no auth):
- `GET stats`, `POST reset`, `POST faults`, `POST shape`, `POST credentials`;
- `POST links` makes a link outside the proxy (`seed_link`; not a payout-link API request);
- `GET links` lists every stored link, oldest first, with its status and the idempotency key it was created under
  (`links`);
- `GET links/{id}` shows a stored link (`link`);
- `POST links/{id}/status` with `{"status": ...}` moves a link to any contract status (`set_status`), the way
  the payee, Dots or time would.

Run it alone with `python -m local_stack.dots_emulator --port 8090`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import hmac
import ipaddress
import json
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

# Obviously fake credentials for the local stack; never valid against the real API.
DEMO_CLIENT_ID = "demo-client-id"
DEMO_API_KEY = "demo-api-key-not-a-secret"

PAYOUT_LINKS_PATH = "/api/v2/payout-links"
CONTROL_PREFIX = "/_emulator/"
SHAPES = ("v2", "v2-200", "v1")
DELIVERY_METHODS = ("sms", "link", "email", "all")
MAX_BODY_BYTES = 1 << 20
DEFAULT_FAULT_BODY = {"message": "Injected failure"}
LINK_STATUSES = (
    "created",
    "delivery_pending",
    "delivery_failed",
    "sent",
    "delivered",
    "claimed",
    "reversed",
    "canceled",
    "expired",
)
CANCELABLE_STATUSES = frozenset({"created", "delivery_pending", "delivery_failed", "sent", "delivered"})

# serve_forever() only notices shutdown() between polls; a short poll keeps stop() quick.
_POLL_INTERVAL_SECONDS = 0.05

type Json = dict[str, Any]

# What `seed_link` makes when given no payload: a link to a payee with a fictional (555-01xx) phone number.
DEFAULT_SEED_PAYLOAD: Json = {"amount": 1234, "payee": {"country_code": "1", "phone_number": "5555550123"}}

# Marks a request body that is not valid JSON (None is a valid JSON value).
_UNREADABLE: Any = object()


@dataclass(frozen=True)
class _Reply:
    """One HTTP answer, built before anything is written to the socket."""

    status: int
    payload: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json_reply(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    return _Reply(status, json.dumps(body).encode(), headers=headers)


def _error(status: int, message: str) -> _Reply:
    return _json_reply(status, {"message": message})


@dataclass(frozen=True)
class _Route:
    """A payout-link API request: `kind` is "create", "read" or "cancel"; reads and cancels name a link."""

    kind: str
    link_id: str | None = None


class _ApiError(Exception):
    """A client error the emulator answers with `{"message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def reply(self) -> _Reply:
        return _error(self.status, str(self))


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

_FAULT_KEYS = frozenset(
    {
        "status",
        "body",
        "retry_after",
        "raw_body",
        "delay_seconds",
        "drop",
        "after_create",
        "trickle_seconds",
        "link_overrides",
        "answer_link",
        "count",
    }
)


def _fault_field(spec: Json, key: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    """Read an optional fault key, refusing wrong types (and bools posing as numbers)."""
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise ValueError(f"fault {key!r} must be {names}")
    return value


@dataclass
class _Fault:
    """A queued misbehaviour for the next `remaining` payout-link API requests (creates, reads or cancels)."""

    status: int | None
    body: Any
    retry_after: str | None
    raw_body: str | None
    delay_seconds: float
    drop: bool
    # Disrupt after the real action (the create, the read or the cancel happened), not before it.
    after_create: bool
    # The real answer's body goes out one byte per `trickle_seconds`: every read is quick, the whole is slow.
    trickle_seconds: float | None
    # Top-level link fields replaced in the answer only: the stored link stays as it is.
    link_overrides: Json | None
    # The id of a stored link that answers the request instead of the real action, which is not taken: a create
    # stores nothing (as if its key were that link's), a cancel cancels nothing.
    answer_link: str | None
    remaining: int

    @classmethod
    def parse(cls, spec: Any) -> _Fault:
        if not isinstance(spec, dict):
            raise ValueError("a fault must be a JSON object")
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        fault = cls(
            status=_fault_field(spec, "status", (int,)),
            body=_fault_field(spec, "body", (dict, str), DEFAULT_FAULT_BODY),
            retry_after=_fault_field(spec, "retry_after", (str,)),
            raw_body=_fault_field(spec, "raw_body", (str,)),
            delay_seconds=float(_fault_field(spec, "delay_seconds", (int, float), 0.0)),
            drop=_fault_field(spec, "drop", (bool,), False),
            after_create=_fault_field(spec, "after_create", (bool,), False),
            trickle_seconds=_fault_field(spec, "trickle_seconds", (int, float)),
            link_overrides=_fault_field(spec, "link_overrides", (dict,)),
            answer_link=_fault_field(spec, "answer_link", (str,)),
            remaining=_fault_field(spec, "count", (int,), 1),
        )
        fault._check(spec)
        return fault

    def _check(self, spec: Json) -> None:
        """Refuse specs that would be silently ignored, so a typo in a test fails loudly."""
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("fault 'status' must be between 100 and 599")
        if self.remaining < 1:
            raise ValueError("fault 'count' must be at least 1")
        if self.delay_seconds < 0:
            raise ValueError("fault 'delay_seconds' must not be negative")
        if self.trickle_seconds is not None and self.trickle_seconds <= 0:
            raise ValueError("fault 'trickle_seconds' must be greater than 0")
        if self.link_overrides is not None:
            self._check_link_overrides(self.link_overrides)
        if self.drop and self.status is not None:
            raise ValueError("a fault cannot both drop the connection and answer with a status")
        if self._changes_real_answer() and (self.drop or self.status is not None):
            raise ValueError(
                "fault 'trickle_seconds', 'link_overrides' and 'answer_link' act on the real answer: they exclude"
                " 'status' and 'drop'"
            )
        if self.answer_link is not None and not self.answer_link:
            raise ValueError("fault 'answer_link' must name a stored link")
        if self.status is None and any(key in spec for key in ("body", "raw_body", "retry_after")):
            raise ValueError("fault 'body', 'raw_body' and 'retry_after' need a 'status'")
        if "body" in spec and "raw_body" in spec:
            raise ValueError("a fault takes 'body' or 'raw_body', not both")
        if self.status is None and not self.drop and self.delay_seconds == 0 and not self._changes_real_answer():
            raise ValueError(
                "a fault needs 'status', 'drop', 'delay_seconds', 'trickle_seconds', 'link_overrides' or 'answer_link'"
            )

    @staticmethod
    def _check_link_overrides(overrides: Json) -> None:
        """Checked now, not when the answer is serialised mid-request, where a failure could only drop
        the connection."""
        if not overrides:
            raise ValueError("fault 'link_overrides' must replace at least one field")
        try:
            json.dumps(overrides)
        except (TypeError, ValueError):
            raise ValueError("fault 'link_overrides' must be JSON-serialisable") from None

    def _changes_real_answer(self) -> bool:
        """Trickle, link overrides and another link's answer act on the real answer, so a fault with only them still
        does something."""
        return self.trickle_seconds is not None or self.link_overrides is not None or self.answer_link is not None

    def reply(self) -> _Reply:
        assert self.status is not None
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        if self.raw_body is not None:
            return _Reply(self.status, self.raw_body.encode(), "text/plain; charset=utf-8", headers)
        return _json_reply(self.status, self.body, headers)


# ---------------------------------------------------------------------------------------------
# Payout-link requests
# ---------------------------------------------------------------------------------------------


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # covers both bad JSON and bad UTF-8
        return _UNREADABLE


def _basic_credentials(header: str | None) -> bytes | None:
    """The decoded `client_id:api_key` of a Basic Authorization header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _validate_payout(body: Any) -> Json:
    """Reject what the real API would reject; just enough for the link to be built safely."""
    if body is _UNREADABLE or not isinstance(body, dict):
        raise _ApiError(400, "Invalid JSON body")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise _ApiError(400, "amount must be a positive integer number of cents")
    if body.get("user_id") is None and body.get("payee") is None:
        raise _ApiError(400, "user_id or payee is required")
    for key in ("payee", "delivery", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise _ApiError(400, f"{key} must be an object")
    delivery = body.get("delivery") or {}
    if "method" in delivery and delivery["method"] not in DELIVERY_METHODS:
        raise _ApiError(400, f"delivery.method must be one of {', '.join(DELIVERY_METHODS)}")
    idempotency_key = body.get("idempotency_key")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise _ApiError(400, "idempotency_key must be a string or null")
    return body


def _delivery_view(delivery: Json | None, payee: Json | None) -> Json | None:
    """Dots echoes delivery merged with the payee's contact details."""
    if delivery is None:
        return None
    payee = payee or {}
    return {
        "method": delivery.get("method"),
        "email": payee.get("email"),
        "country_code": payee.get("country_code"),
        "phone_number": payee.get("phone_number"),
    }


def _build_link(payout: Json) -> Json:
    """A link object with the same drift as the real API (float amount, naive time, string metadata)."""
    link_id = str(uuid.uuid4())
    metadata = payout.get("metadata")
    return {
        "id": link_id,
        "created": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
        "link": f"https://sandbox.dots.example/payout/{link_id}",
        "amount": float(payout["amount"]),
        "status": "created",
        "payee": payout.get("payee"),
        "delivery": _delivery_view(payout.get("delivery"), payout.get("payee")),
        "tax_exempt": payout.get("tax_exempt") is True,
        "claimed_user_id": None,
        "flow_id": str(uuid.uuid4()),
        "metadata": json.dumps(metadata) if metadata is not None else None,
        "user_id": payout.get("user_id"),
        "memo": payout.get("memo"),
        "livemode": False,
    }


def _wrap(link: Json, shape: str, created: bool = False) -> _Reply:
    """`link` as the current shape answers it; only a create answers 201, and only in shape v2."""
    if shape == "v1":
        return _json_reply(200, {"success": True, "payout_link": link})
    return _json_reply(201 if created and shape == "v2" else 200, link)


def _payout_route(method: str, path: str) -> _Route | None:
    """The payout-link API request that `method path` is, or None (then it is answered 404 and not counted)."""
    if path == PAYOUT_LINKS_PATH:
        return _Route("create") if method == "POST" else None
    prefix = PAYOUT_LINKS_PATH + "/"
    segment = path.removeprefix(prefix)
    if not path.startswith(prefix) or not segment or "/" in segment:
        return None  # exactly one segment after /payout-links/
    kind = {"GET": "read", "DELETE": "cancel"}.get(method)
    return _Route(kind, unquote(segment)) if kind is not None else None


def _link_not_found() -> _ApiError:
    return _ApiError(404, "Payout link not found")


def _loopback_host(host: str) -> str:
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


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


class DotsEmulator:
    """The Dots payout-link API on a loopback port, with fault injection and a control API."""

    def __init__(self, client_id: str, api_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = _loopback_host(host)
        self._requested_port = port
        self._initial_credentials = (client_id, api_key)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # signalled whenever a payout-link request ends
        self._in_flight = 0
        self._server: _EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._open_connections: set[socket.socket] = set()
        self._clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the Dots emulator is already running")
        server = _EmulatorServer((self._host, self._requested_port), self)
        self._server, self._port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name=f"dots-emulator-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        # Idle keep-alive connections would otherwise keep their handler threads waiting.
        self._close_open_connections()
        thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Dots emulator has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/api"

    # -- control ------------------------------------------------------------------------------

    def stats(self) -> Json:
        """`requests` counts payout-link API requests (faulted ones too), split into `creates`, `reads` and
        `cancels`; `links_created` counts links the API created (not replays, not seeded links); `links` maps
        each idempotency key, then `<none>#n` for keyless creates, then `<seeded>#n`, to a link id."""
        with self._lock:
            links = dict(self._ids_by_key)
            for number, link_id in enumerate(self._keyless_ids, start=1):
                links[f"<none>#{number}"] = link_id
            for number, link_id in enumerate(self._seeded_ids, start=1):
                links[f"<seeded>#{number}"] = link_id
            return {
                "requests": sum(self._requests_by_kind.values()),
                "creates": self._requests_by_kind["create"],
                "reads": self._requests_by_kind["read"],
                "cancels": self._requests_by_kind["cancel"],
                "links_created": self._links_created,
                "connections": self._connections,
                "links": links,
                "last_request": copy.deepcopy(self._last_request),
            }

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no payout-link request is being handled (a delayed one may outlive its client);
        False if that takes longer than `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def inject(self, *faults: Json) -> int:
        """Queue faults (all or none) and return the queue length. An `answer_link` must name a stored link."""
        parsed = [_Fault.parse(spec) for spec in faults]
        with self._lock:
            for fault in parsed:
                if fault.answer_link is not None and fault.answer_link not in self._links:
                    raise ValueError(f"fault 'answer_link' names no stored link: {fault.answer_link!r}")
            self._faults.extend(parsed)
            return len(self._faults)

    def clear_faults(self) -> int:
        """Drop every queued fault (links and counts stay); the number of answers they still held."""
        with self._lock:
            dropped = sum(fault.remaining for fault in self._faults)
            self._faults.clear()
            return dropped

    def set_shape(self, shape: str) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
        with self._lock:
            self._shape = shape

    def set_credentials(self, client_id: str, api_key: str) -> None:
        with self._lock:
            self._credentials = (client_id, api_key)

    def links(self) -> list[Json]:
        """Every stored link, in the order they were made, as `{"id", "status", "idempotency_key", "seeded"}`: the
        key is the one its create carried (None for a create without one, and for a seeded link); `seeded` tells a
        link made by `seed_link` from one the API created. Counting links after a scenario needs nothing more."""
        with self._lock:
            keys = {link_id: key for key, link_id in self._ids_by_key.items()}
            seeded = set(self._seeded_ids)
            return [
                {
                    "id": link_id,
                    "status": link["status"],
                    "idempotency_key": keys.get(link_id),
                    "seeded": link_id in seeded,
                }
                for link_id, link in self._links.items()
            ]

    def link(self, link_id: str) -> Json:
        """A copy of the stored link, whatever the shape; KeyError if there is none."""
        with self._lock:
            return copy.deepcopy(self._stored_link(link_id))

    def set_status(self, link_id: str, status: object) -> Json:
        """Move a link to any contract status, as the payee, Dots or time would; every later answer about the
        link shows it. A link that becomes `claimed` gets a fake `claimed_user_id` if it had none.
        ValueError for a status outside the contract, KeyError for an unknown link; returns a copy of the link."""
        if not isinstance(status, str) or status not in LINK_STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(LINK_STATUSES)}")
        with self._lock:
            link = self._stored_link(link_id)
            link["status"] = status
            if status == "claimed" and link["claimed_user_id"] is None:
                link["claimed_user_id"] = str(uuid.uuid4())
            return copy.deepcopy(link)

    def seed_link(self, payload: Json | None = None) -> Json:
        """Make a link outside the proxy (say, from the Dots dashboard): validated like a create, stored and
        retrievable like any link, but not a payout-link API request, so neither `requests` nor `links_created`
        count it. No payload (or `{}`) makes `DEFAULT_SEED_PAYLOAD`. A seeded link has no idempotency key, so
        no create replays it: a payload with one is refused, as is any payload the API would refuse
        (ValueError). Returns a copy of the link."""
        if payload is None or payload == {}:
            payload = DEFAULT_SEED_PAYLOAD
        try:
            _validate_payout(payload)
        except _ApiError as error:
            raise ValueError(str(error)) from None
        if payload.get("idempotency_key") is not None:
            raise ValueError("a seeded link takes no idempotency_key: create it through the API to replay it")
        link = _build_link(copy.deepcopy(payload))  # the caller's payload may change later; the link may not
        with self._lock:
            self._links[link["id"]] = link
            self._seeded_ids.append(link["id"])
            return copy.deepcopy(link)

    # -- state (callers hold the lock, except in __init__) --------------------------------------

    def _clear(self) -> None:
        self._credentials = self._initial_credentials
        self._shape = "v2"
        self._requests_by_kind = {"create": 0, "read": 0, "cancel": 0}
        self._links_created = 0
        self._connections = 0
        self._links: dict[str, Json] = {}  # every stored link by id, whoever made it
        self._ids_by_key: dict[str, str] = {}  # idempotency key -> link id
        self._keyless_ids: list[str] = []
        self._seeded_ids: list[str] = []
        self._faults: deque[_Fault] = deque()
        self._last_request: Json | None = None

    def _stored_link(self, link_id: str) -> Json:
        """The stored link itself, to read or change under the lock; KeyError if there is none."""
        link = self._links.get(link_id)
        if link is None:
            raise KeyError(f"unknown payout link {link_id!r}")
        return link

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            self._faults.popleft()
        return fault

    # -- used by the request handler ----------------------------------------------------------

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._open_connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open_connections.discard(connection)

    def _close_open_connections(self) -> None:
        with self._lock:
            connections = list(self._open_connections)
            self._open_connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):  # the client already went away
                connection.shutdown(socket.SHUT_RDWR)

    def _begin_payout(self, route: _Route, request: Json) -> _Fault | None:
        """Count and record a payout-link API request (`request` has its method, path, headers and body);
        return the fault that applies to it, if any: one queue for creates, reads and cancels, in arrival order."""
        with self._lock:
            self._in_flight += 1
            self._requests_by_kind[route.kind] += 1
            self._last_request = request
            return self._take_fault()

    def _end_payout(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _process_payout(
        self,
        route: _Route,
        authorization: str | None,
        body: Any,
        link_overrides: Json | None = None,
        answer_link: str | None = None,
    ) -> _Reply:
        """The real answer to a create, read or cancel; `link_overrides` replace fields of the link in this
        answer only (a refusal has no link and is answered unchanged). With `answer_link`, the request is
        answered with that stored link instead, and does nothing (a create's body is still checked)."""
        if not self._authorized(authorization):
            return _error(401, "Unauthorized")
        try:
            if answer_link is None:
                link, shape = self._act(route, body)
            else:
                if route.kind == "create":
                    _validate_payout(body)
                link, shape = self._read(answer_link)
        except _ApiError as error:
            return error.reply()
        return _wrap({**link, **(link_overrides or {})}, shape, created=route.kind == "create")

    def _act(self, route: _Route, body: Any) -> tuple[Json, str]:
        """Do what `route` asks; a copy of the link it is about, and the shape to answer it in."""
        if route.kind == "create":
            return self._create_or_get(_validate_payout(body))
        assert route.link_id is not None
        if route.kind == "read":
            return self._read(route.link_id)
        return self._cancel(route.link_id)

    def _authorized(self, authorization: str | None) -> bool:
        with self._lock:
            client_id, api_key = self._credentials
        presented = _basic_credentials(authorization)
        expected = f"{client_id}:{api_key}".encode()
        return presented is not None and hmac.compare_digest(presented, expected)

    def _create_or_get(self, payout: Json) -> tuple[Json, str]:
        """Like Dots: a known idempotency key returns the first link, whatever the new body says."""
        key = payout.get("idempotency_key")
        with self._lock:
            if key is not None and key in self._ids_by_key:
                # The stored link as it is now: a status it moved to since shows in the replay too.
                return copy.deepcopy(self._links[self._ids_by_key[key]]), self._shape
            link = _build_link(payout)
            self._links[link["id"]] = link
            if key is None:
                self._keyless_ids.append(link["id"])
            else:
                self._ids_by_key[key] = link["id"]
            self._links_created += 1
            return copy.deepcopy(link), self._shape

    def _read(self, link_id: str) -> tuple[Json, str]:
        with self._lock:
            link = self._links.get(link_id)
            if link is None:
                raise _link_not_found()
            return copy.deepcopy(link), self._shape

    def _cancel(self, link_id: str) -> tuple[Json, str]:
        """Cancel a link that is not yet claimed, reversed, expired or canceled. The refusals' statuses and
        texts are the emulator's own: Dots does not document them."""
        with self._lock:
            link = self._links.get(link_id)
            if link is None:
                raise _link_not_found()
            if link["status"] == "canceled":
                raise _ApiError(409, "Payout link already canceled")
            if link["status"] not in CANCELABLE_STATUSES:
                raise _ApiError(400, f"Payout link cannot be canceled in status {link['status']}")
            link["status"] = "canceled"
            return copy.deepcopy(link), self._shape

    def _control(self, method: str, name: str, body: Any) -> _Reply:
        """`body` is None for an empty request body, `_UNREADABLE` for one that is not JSON."""
        match (method, name.split("/")):
            case ("GET", ["stats"]):
                return _json_reply(200, self.stats())
            case ("POST", ["reset"]):
                self.reset()
                return _json_reply(200, {})
            case ("POST", ["faults"]):
                return self._control_faults(body)
            case ("DELETE", ["faults"]):
                return _json_reply(200, {"dropped": self.clear_faults()})
            case ("POST", ["shape"]):
                return self._control_shape(body)
            case ("POST", ["credentials"]):
                return self._control_credentials(body)
            case ("POST", ["links"]):
                return self._control_seed(body)
            case ("GET", ["links"]):
                return _json_reply(200, self.links())
            case ("GET", ["links", link_id]) if link_id:
                return self._control_link(unquote(link_id))
            case ("POST", ["links", link_id, "status"]) if link_id:
                return self._control_status(unquote(link_id), body)
            case _:
                return _error(404, "Not found")

    def _control_faults(self, body: Any) -> _Reply:
        if body is _UNREADABLE:
            return _error(400, "Invalid JSON body")
        specs = body if isinstance(body, list) else [body]
        try:
            queued = self.inject(*specs)
        except ValueError as error:
            return _error(400, str(error))
        return _json_reply(200, {"queued": queued})

    def _control_shape(self, body: Any) -> _Reply:
        shape = body.get("shape") if isinstance(body, dict) else None
        if not isinstance(shape, str):
            return _error(400, "shape must be one of " + ", ".join(SHAPES))
        try:
            self.set_shape(shape)
        except ValueError as error:
            return _error(400, str(error))
        return _json_reply(200, {"shape": shape})

    def _control_credentials(self, body: Any) -> _Reply:
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON body")
        client_id, api_key = body.get("client_id"), body.get("api_key")
        if not isinstance(client_id, str) or not isinstance(api_key, str):
            return _error(400, "client_id and api_key must be strings")
        self.set_credentials(client_id, api_key)
        return _json_reply(200, {})

    def _control_seed(self, body: Any) -> _Reply:
        try:
            return _json_reply(201, self.seed_link(body))
        except ValueError as error:
            return _error(400, str(error))

    def _control_link(self, link_id: str) -> _Reply:
        try:
            return _json_reply(200, self.link(link_id))
        except KeyError:
            return _link_not_found().reply()

    def _control_status(self, link_id: str, body: Any) -> _Reply:
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON body")
        unknown = set(body) - {"status"}
        if unknown:
            return _error(400, f"unknown keys: {', '.join(sorted(unknown))}")
        try:
            return _json_reply(200, self.set_status(link_id, body.get("status")))
        except ValueError as error:
            return _error(400, str(error))
        except KeyError:
            return _link_not_found().reply()


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


class _EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: DotsEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.socket.getsockname()[:2]  # what TCPServer keeps as server_address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are expected here, not errors.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _EmulatorServer

    @property
    def emulator(self) -> DotsEmulator:
        return self.server.emulator

    def setup(self) -> None:
        super().setup()
        # One handler per TCP connection, so this counts connections, not requests.
        self.emulator._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emulator._connection_closed(self.connection)

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
        except _ApiError as error:
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._send(error.reply())
            return
        path = urlsplit(self.path).path
        route = _payout_route(self.command, path)
        if route is not None:
            self._payout_request(route, path, raw)
        elif path.startswith(CONTROL_PREFIX):
            name = path.removeprefix(CONTROL_PREFIX)
            body = _parse_json(raw) if raw else None
            self._send(self.emulator._control(self.command, name, body))
        else:
            self._send(_error(404, "Not found"))

    def _read_body(self) -> bytes:
        """Always consume the body, so the next request on a keep-alive connection parses."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _ApiError(411, "Send a Content-Length; chunked bodies are not supported")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _ApiError(400, "Invalid Content-Length") from None
        if length < 0:
            raise _ApiError(400, "Invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _ApiError(413, "Body too large")
        return self.rfile.read(length)

    def _payout_request(self, route: _Route, path: str, raw: bytes) -> None:
        """A create, read or cancel: the next fault, then the real action and answer (or not, as it says)."""
        body = _parse_json(raw)
        request = {
            "method": self.command,
            "path": path,
            "headers": self._recorded_headers(),
            "body": None if body is _UNREADABLE else body,
        }
        fault = self.emulator._begin_payout(route, request)
        try:
            if fault is not None and not fault.after_create and self._disrupt(fault):
                return
            overrides = fault.link_overrides if fault is not None else None
            answer_link = fault.answer_link if fault is not None else None
            reply = self.emulator._process_payout(
                route, self.headers.get("Authorization"), body, overrides, answer_link
            )
            if fault is not None and fault.after_create and self._disrupt(fault):
                return
            if fault is not None and fault.trickle_seconds is not None:
                self._trickle(reply, fault.trickle_seconds)
            else:
                self._send(reply)
        finally:
            # After a trickle too: the request is in flight until its last byte is out or the client is gone.
            self.emulator._end_payout()

    def _disrupt(self, fault: _Fault) -> bool:
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

    def _send(self, reply: _Reply) -> None:
        self._send_head(reply)
        self.wfile.write(reply.payload)

    def _trickle(self, reply: _Reply, seconds_per_byte: float) -> None:
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

    def _send_head(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.payload)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")  # so a keep-alive client does not reuse it
        self.end_headers()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Dots payout-link API emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--client-id", default=DEMO_CLIENT_ID)
    parser.add_argument("--api-key", default=DEMO_API_KEY)
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with DotsEmulator(args.client_id, args.api_key, port=args.port) as emulator:
        print(f"dots emulator listening on {emulator.base_url}", flush=True)
        stop_requested.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
