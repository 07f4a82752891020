"""`DotsEmulator`: the links, counts and queued faults behind the emulated API, and its start and stop.

Its public methods are what a test in the same process uses, and what the control API calls (`control.Controlled`);
`count_connection`, `payout_request` and `answer_payout` are what the HTTP server calls (`server.Served`).
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from local_stack.dots_emulator.api import (
    CANCELABLE_STATUSES,
    LINK_STATUSES,
    SHAPES,
    ApiError,
    Json,
    Reply,
    Route,
    basic_credentials,
    build_link,
    error_reply,
    link_not_found,
    validate_payout,
    wrap,
)
from local_stack.dots_emulator.faults import Fault
from local_stack.dots_emulator.server import EmulatorServer, loopback_host

# Obviously fake credentials for the local stack; never valid against the real API.
DEMO_CLIENT_ID = "demo-client-id"
DEMO_API_KEY = "demo-api-key-not-a-secret"

# What `seed_link` makes when given no payload: a link to a payee with a fictional (555-01xx) phone number.
DEFAULT_SEED_PAYLOAD: Json = {"amount": 1234, "payee": {"country_code": "1", "phone_number": "5555550123"}}


class DotsEmulator:
    """The Dots payout-link API on a loopback port, with fault injection and a control API."""

    def __init__(self, client_id: str, api_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = loopback_host(host)
        self._requested_port = port
        self._initial_credentials = (client_id, api_key)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # signalled whenever a payout-link request ends
        self._in_flight = 0
        self._server: EmulatorServer | None = None
        self._port: int | None = None
        self._clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the Dots emulator is already running")
        server = EmulatorServer((self._host, self._requested_port), self)
        self._server, self._port = server, server.port
        server.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

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

    # -- control: what a test calls, and the control API (control.Controlled) ---------------------

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
        parsed = [Fault.parse(spec) for spec in faults]
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
            validate_payout(payload)
        except ApiError as error:
            raise ValueError(str(error)) from None
        if payload.get("idempotency_key") is not None:
            raise ValueError("a seeded link takes no idempotency_key: create it through the API to replay it")
        link = build_link(copy.deepcopy(payload))  # the caller's payload may change later; the link may not
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
        self._faults: deque[Fault] = deque()
        self._last_request: Json | None = None

    def _stored_link(self, link_id: str) -> Json:
        """The stored link itself, to read or change under the lock; KeyError if there is none."""
        link = self._links.get(link_id)
        if link is None:
            raise KeyError(f"unknown payout link {link_id!r}")
        return link

    def _take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            self._faults.popleft()
        return fault

    # -- what the HTTP server calls (server.Served) ---------------------------------------------

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @contextlib.contextmanager
    def payout_request(self, route: Route, request: Json) -> Iterator[Fault | None]:
        """Count and record a payout-link API request (`request` has its method, path, headers and body), and
        give the fault that applies to it, if any: one queue for creates, reads and cancels, in arrival order.
        The request is in flight, for `wait_idle`, until the block ends."""
        with self._lock:
            self._in_flight += 1
            self._requests_by_kind[route.kind] += 1
            self._last_request = request
            fault = self._take_fault()
        try:
            yield fault
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def answer_payout(
        self,
        route: Route,
        authorization: str | None,
        body: Any,
        link_overrides: Json | None = None,
        answer_link: str | None = None,
    ) -> Reply:
        """The real answer to a create, read or cancel; `link_overrides` replace fields of the link in this
        answer only (a refusal has no link and is answered unchanged). With `answer_link`, the request is
        answered with that stored link instead, and does nothing (a create's body is still checked)."""
        if not self._authorized(authorization):
            return error_reply(401, "Unauthorized")
        try:
            if answer_link is None:
                link, shape = self._act(route, body)
            else:
                if route.kind == "create":
                    validate_payout(body)
                link, shape = self._read(answer_link)
        except ApiError as error:
            return error.reply()
        return wrap({**link, **(link_overrides or {})}, shape, created=route.kind == "create")

    def _act(self, route: Route, body: Any) -> tuple[Json, str]:
        """Do what `route` asks; a copy of the link it is about, and the shape to answer it in."""
        if route.kind == "create":
            return self._create_or_get(validate_payout(body))
        assert route.link_id is not None
        if route.kind == "read":
            return self._read(route.link_id)
        return self._cancel(route.link_id)

    def _authorized(self, authorization: str | None) -> bool:
        with self._lock:
            client_id, api_key = self._credentials
        presented = basic_credentials(authorization)
        expected = f"{client_id}:{api_key}".encode()
        return presented is not None and hmac.compare_digest(presented, expected)

    def _create_or_get(self, payout: Json) -> tuple[Json, str]:
        """Like Dots: a known idempotency key returns the first link, whatever the new body says."""
        key = payout.get("idempotency_key")
        with self._lock:
            if key is not None and key in self._ids_by_key:
                # The stored link as it is now: a status it moved to since shows in the replay too.
                return copy.deepcopy(self._links[self._ids_by_key[key]]), self._shape
            link = build_link(payout)
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
                raise link_not_found()
            return copy.deepcopy(link), self._shape

    def _cancel(self, link_id: str) -> tuple[Json, str]:
        """Cancel a link that is not yet claimed, reversed, expired or canceled. The refusals' statuses and
        texts are the emulator's own: Dots does not document them."""
        with self._lock:
            link = self._links.get(link_id)
            if link is None:
                raise link_not_found()
            if link["status"] == "canceled":
                raise ApiError(409, "Payout link already canceled")
            if link["status"] not in CANCELABLE_STATUSES:
                raise ApiError(400, f"Payout link cannot be canceled in status {link['status']}")
            link["status"] = "canceled"
            return copy.deepcopy(link), self._shape
