"""A frontend on another origin calls the local stack with fetch() in real Chromium: what CORS lets it send and read.

The stack is `python -m local_stack` (what `make run` starts), allowing one frontend origin through
CORS_ALLOWED_ORIGINS, against the session's moto server and Dots emulator (so faults can be injected). The pages
are frontend.html served on 127.0.0.1 by two more ports: the allowed origin and one the stack does not know.
Preflights are seen as Chromium's DevTools protocol reports them: fetch() itself never shows them to the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.support import FrontendServer
from tests.conftest import start_stack
from tests.support import LINK_KEYS, RunningStack, new_key, payout_body, token

pytestmark = pytest.mark.browser

API_HEADERS = {"authorization", "content-type", "idempotency-key"}
# What tracing SDKs add to a frontend's requests by themselves: OpenTelemetry (W3C Trace Context) and Sentry.
TRACING_HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=opaque",
    "sentry-trace": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    "baggage": "sentry-environment=test,sentry-release=frontend%401.0.0",
}


@pytest.fixture(scope="module")
def allowed() -> Iterator[FrontendServer]:
    server = FrontendServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def disallowed() -> Iterator[FrontendServer]:
    server = FrontendServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cors_stack(allowed, aws_resources, aws_endpoint, dots, tmp_path_factory) -> Iterator[RunningStack]:
    """One local stack for the module, allowing the `allowed` frontend's origin and no other."""
    running = start_stack(
        tmp_path_factory.mktemp("browser-stack"),
        AWS_ENDPOINT_URL=aws_endpoint,
        PAYOUT_API_BASE_URL=dots.base_url,
        CORS_ALLOWED_ORIGINS=allowed.origin,
        LOCAL_CONCURRENCY="2",  # a request held upstream and its duplicate, at once
    )
    yield running
    running.stop()


@dataclass
class Preflight:
    url: str
    request_headers: dict[str, str]
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def requested_headers(self) -> set[str]:
        return set(self.request_headers.get("access-control-request-headers", "").split(","))


class Frontend:
    """frontend.html open on its origin in a fresh context, calling the stack; records the preflights Chromium sends."""

    def __init__(self, page: Page, origin: str, api: str) -> None:
        self.page = page
        self.origin = origin
        self.api = api
        self._preflights: dict[str, Preflight] = {}
        devtools = page.context.new_cdp_session(page)
        devtools.on("Network.requestWillBeSent", self._request_sent)
        devtools.on("Network.responseReceived", self._response_received)
        devtools.send("Network.enable")
        page.goto(f"{origin}/?api={api}")

    def _request_sent(self, event: dict[str, Any]) -> None:
        if event.get("initiator", {}).get("type") == "preflight":
            request = event["request"]
            headers = {name.lower(): value for name, value in request["headers"].items()}
            self._preflights[event["requestId"]] = Preflight(request["url"], headers)

    def _response_received(self, event: dict[str, Any]) -> None:
        preflight = self._preflights.get(event["requestId"])
        if event.get("type") == "Preflight" and preflight is not None:
            preflight.status = event["response"]["status"]
            preflight.response_headers = {name.lower(): value for name, value in event["response"]["headers"].items()}

    def preflights(self) -> list[Preflight]:
        return list(self._preflights.values())

    @staticmethod
    def request(
        label: str, *, key: str | None = None, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """POST /payout-links as a signed-in frontend: a bearer token, JSON and an Idempotency-Key."""
        return {
            "label": label,
            "method": "POST",
            "path": "/payout-links",
            "headers": {
                "authorization": f"Bearer {token('browser-user')}",
                "content-type": "application/json",
                "idempotency-key": key or new_key(),
                **(headers or {}),
            },
            "body": payout_body() if body is None else body,
        }

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """The outcome as the page's JavaScript saw it: status, readable headers and body, or the rejection."""
        return self.page.evaluate("request => call(request)", request)

    def start(self, name: str, request: dict[str, Any]) -> None:
        self.page.evaluate("([name, request]) => start(name, request)", [name, request])

    def finish(self, name: str) -> dict[str, Any]:
        return self.page.evaluate("name => finish(name)", name)


@pytest.fixture
def frontend(page, allowed, cors_stack, upstream) -> Frontend:
    return Frontend(page, allowed.origin, cors_stack.url)


@pytest.fixture
def foreign_frontend(page, disallowed, cors_stack, upstream) -> Frontend:
    return Frontend(page, disallowed.origin, cors_stack.url)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_problem_js_can_quote(outcome: dict[str, Any], status: int) -> None:
    """A problem body JavaScript read, whose request_id is the apigw-requestid header JavaScript read too."""
    assert outcome["status"] == status, outcome
    assert outcome["headers"]["content-type"] == "application/problem+json"
    assert outcome["body"]["status"] == status
    assert outcome["body"]["request_id"] == outcome["headers"].get("apigw-requestid"), outcome


def test_an_expired_token_is_the_gateways_401_and_javascript_reads_it(frontend, upstream):
    """The gateway refuses the token itself (the function never runs), and its answer carries the CORS headers: the
    page reads the status, the body and `apigw-requestid`; not `www-authenticate`, which CORS does not expose."""
    expired = token("browser-user", exp=int(time.time()) - 1)
    outcome = frontend.call(frontend.request("expired token", headers={"authorization": f"Bearer {expired}"}))

    assert outcome["status"] == 401, outcome
    assert outcome["body"] == {"message": "Unauthorized"}
    assert outcome["headers"].get("apigw-requestid")
    assert "www-authenticate" not in outcome["headers"]
    assert upstream.stats()["requests"] == 0


def test_a_create_from_an_allowed_origin_is_preflighted_and_js_reads_the_201(frontend, upstream):
    outcome = frontend.call(frontend.request("create"))

    (preflight,) = frontend.preflights()
    assert preflight.url == f"{frontend.api}/payout-links"
    assert preflight.request_headers["access-control-request-method"] == "POST"
    assert preflight.requested_headers == API_HEADERS
    assert preflight.status == 204
    assert preflight.response_headers["access-control-allow-origin"] == frontend.origin
    assert outcome["status"] == 201, outcome
    assert outcome["body"].keys() == LINK_KEYS
    assert outcome["body"]["amount"] == 2500 and outcome["body"]["link"].startswith("https://")
    assert outcome["headers"]["content-type"] == "application/json"
    # Only what CORS exposes (and the safelisted response headers) reaches JavaScript.
    assert "server" not in outcome["headers"] and "date" not in outcome["headers"]
    assert upstream.stats()["links_created"] == 1


def test_the_owner_reads_and_cancels_from_the_page_after_their_preflights(frontend, upstream):
    """GET and DELETE carry `authorization`, so the browser preflights them too: the link's URL gets a preflight
    that admits both (Chromium then reuses it for the DELETE, within its max age), and JavaScript reads the link,
    then the canceled link."""
    created = frontend.call(frontend.request("create"))
    link_path = f"/payout-links/{created['body']['id']}"
    owner = {"authorization": f"Bearer {token('browser-user')}"}

    read = frontend.call({"label": "read", "method": "GET", "path": link_path, "headers": owner})
    canceled = frontend.call({"label": "cancel", "method": "DELETE", "path": link_path, "headers": owner})

    preflights = [p for p in frontend.preflights() if p.url == f"{frontend.api}{link_path}"]
    assert preflights[0].request_headers["access-control-request-method"] == "GET"
    for preflight in preflights:
        assert preflight.requested_headers == {"authorization"}
        assert preflight.status == 204
        assert preflight.response_headers["access-control-allow-origin"] == frontend.origin
    allowed_methods = {m.strip() for m in preflights[-1].response_headers["access-control-allow-methods"].split(",")}
    assert {"GET", "DELETE"} <= allowed_methods
    assert read.get("status") == 200 and read["body"] == created["body"], read
    assert canceled.get("status") == 200 and canceled["body"]["status"] == "canceled", canceled


def test_the_owner_lists_its_links_from_the_page_after_the_preflight(frontend, upstream):
    """GET /payout-links carries `authorization`, so the browser preflights it: the list's URL (with its query) gets
    a preflight that admits GET and the header, and JavaScript reads a page of links, its `Cache-Control` and the
    next page by its cursor."""
    owner = {"authorization": f"Bearer {token(f'browser-lister-{new_key()}')}"}
    older, newer = (frontend.call(frontend.request(f"create {n}", headers=owner))["body"]["id"] for n in (1, 2))

    first = frontend.call({"label": "list", "method": "GET", "path": "/payout-links?limit=1", "headers": owner})
    cursor = first["body"]["next_cursor"]
    second = frontend.call(
        {"label": "next page", "method": "GET", "path": f"/payout-links?limit=1&cursor={cursor}", "headers": owner}
    )

    (preflight,) = [p for p in frontend.preflights() if p.url == f"{frontend.api}/payout-links?limit=1"]
    assert preflight.request_headers["access-control-request-method"] == "GET"
    assert preflight.requested_headers == {"authorization"}
    assert preflight.status == 204
    assert preflight.response_headers["access-control-allow-origin"] == frontend.origin
    allowed_methods = {m.strip() for m in preflight.response_headers["access-control-allow-methods"].split(",")}
    assert "GET" in allowed_methods
    assert first.get("status") == 200, first
    assert [item["id"] for item in first["body"]["items"]] == [newer]
    assert first["headers"]["cache-control"] == "no-store"  # a CORS-safelisted header: JavaScript reads it
    assert second.get("status") == 200, second
    assert [item["id"] for item in second["body"]["items"]] == [older]
    assert upstream.stats()["creates"] == 2  # the list itself never reached Dots


def test_js_reads_idempotent_replayed_on_a_replay(frontend, upstream):
    key = new_key()
    created = frontend.call(frontend.request("create", key=key))
    replayed = frontend.call(frontend.request("the same again", key=key))

    assert created["status"] == replayed["status"] == 201
    assert "idempotent-replayed" not in created["headers"]
    assert replayed["headers"].get("idempotent-replayed") == "true", replayed["headers"]
    assert replayed["body"] == created["body"]
    assert upstream.stats()["links_created"] == 1


def test_js_reads_a_422_problem_and_the_request_id_it_quotes(frontend, upstream):
    outcome = frontend.call(frontend.request("amount 0", body=payout_body(amount=0)))

    assert_problem_js_can_quote(outcome, 422)
    assert outcome["body"]["errors"][0]["pointer"] == "#/amount"
    assert upstream.stats()["requests"] == 0


def test_js_reads_the_request_id_header_the_logs_carry(frontend, cors_stack, upstream):
    first = frontend.call(frontend.request("create"))
    second = frontend.call(frontend.request("another create"))

    ids = [outcome["headers"].get("apigw-requestid") for outcome in (first, second)]
    assert all(ids) and ids[0] != ids[1], ids
    # The id a user quotes is the one the function's log lines carry as correlation_id.
    wait_for(lambda: f'"correlation_id":"{ids[1]}"' in cors_stack.log_path.read_text())


def test_js_reads_retry_after_on_a_409_while_the_first_request_is_in_progress(frontend, upstream):
    key = new_key()
    upstream.inject({"delay_seconds": 2.0})  # the first create is held upstream...
    frontend.start("first", frontend.request("create, held upstream", key=key))
    wait_for(lambda: upstream.stats()["creates"] == 1)
    duplicate = frontend.call(frontend.request("duplicate meanwhile", key=key))  # ...while its duplicate comes
    first = frontend.finish("first")

    assert_problem_js_can_quote(duplicate, 409)
    assert duplicate["body"]["type"].endswith(":request-in-progress")
    assert int(duplicate["headers"].get("retry-after", "0")) >= 1, duplicate["headers"]
    assert first["status"] == 201
    assert upstream.stats()["links_created"] == 1


def test_js_reads_retry_after_on_a_429_when_upstream_is_rate_limited(frontend, upstream):
    upstream.inject({"status": 429, "retry_after": "11"})

    outcome = frontend.call(frontend.request("create, upstream rate limited"))

    assert_problem_js_can_quote(outcome, 429)
    assert outcome["headers"].get("retry-after") == "11", outcome["headers"]


def test_a_request_with_tracing_headers_passes_the_preflight(frontend, upstream):
    outcome = frontend.call(frontend.request("create, traced", headers=TRACING_HEADERS))

    (preflight,) = frontend.preflights()
    assert preflight.requested_headers == API_HEADERS | TRACING_HEADERS.keys()
    assert preflight.status == 204
    assert outcome.get("status") == 201, outcome
    assert upstream.stats()["links_created"] == 1


def test_a_page_on_another_origin_is_blocked_and_reads_nothing(foreign_frontend, upstream):
    outcome = foreign_frontend.call(foreign_frontend.request("create from a foreign origin"))

    assert outcome == {"rejected": "TypeError", "message": "Failed to fetch"}  # no status, header or body
    (preflight,) = foreign_frontend.preflights()
    assert preflight.status == 204
    assert "access-control-allow-origin" not in preflight.response_headers
    # The preflight failed, so the POST itself was never sent: nothing reached Dots.
    assert upstream.stats()["requests"] == 0
