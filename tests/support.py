"""Helpers the test tiers share: tokens, signed webhooks, request bodies, and ways to call the function."""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import io
import json
import logging
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from standardwebhooks import Webhook

from local_stack.core.gateway import Route, build_event, routes_from_template
from local_stack.core.jwt_authorizer import Authorized, JwtAuthorizer, JwtConfiguration, StaticKeys
from local_stack.core.lambda_worker import LocalLambdaContext
from local_stack.core.template import load_template
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID
from local_stack.issuer import LocalIssuer
from local_stack.stack import DEFAULT_AUDIENCE, FUNCTION, TEMPLATE_PATH
from payout_links.budget import DEFAULT_FUNCTION_TIMEOUT_SECONDS, TimeBudget

ROOT = Path(__file__).resolve().parent.parent
# The time budget of a function at the template's default timeout, which the tests' containers run with unless a
# test sets FUNCTION_TIMEOUT_SECONDS.
BUDGET = TimeBudget.for_timeout(DEFAULT_FUNCTION_TIMEOUT_SECONDS)


@functools.cache
def session_issuer() -> LocalIssuer:
    """The session's OpenID issuer (local_stack/issuer.py, as `make run` starts its own) on a free loopback port,
    started on first use and stopped at the session's end (conftest's `issuer` fixture). Every stack the tests
    start trusts it (JWT_ISSUER); `token()` mints its tokens."""
    return LocalIssuer(audience=DEFAULT_AUDIENCE).start()


@functools.cache
def session_authorizer() -> JwtAuthorizer:
    """The gateway's JWT authorizer as a stack the tests start has it, with the session issuer's keys in hand: what
    `http_event` checks a token with, so that an event carries the claims API Gateway would pass, or none."""
    issuer = session_issuer()
    return JwtAuthorizer(JwtConfiguration(issuer.url, (DEFAULT_AUDIENCE,)), StaticKeys(issuer.jwks()))


def token(sub: str | None = "user-1", **claims: Any) -> str:
    """A token for `sub` (None: no `sub` claim at all) with `claims` over the usual ones (see `token_claims`)."""
    return token_claims({"sub": sub, **claims} if sub is not None else claims)


def token_claims(claims: dict[str, Any], *, omit: tuple[str, ...] = ()) -> str:
    """A token of the session issuer, signed RS256 with its key and `kid`: `iss` (the issuer), `aud` (the stack's
    default audience), `scope` (`payouts:write`), `iat` (now) and `exp` (in an hour), then `claims` over them
    (any JSON value, None for `null`), less the claims named in `omit`."""
    return session_issuer().mint({"scope": "payouts:write", **claims}, omit=omit)


def wait_until(condition: Callable[[], object], *, timeout: float) -> None:
    """Return once `condition()` is true; fail after `timeout` seconds. For waiting on something observable,
    never on a guessed duration."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting"
        time.sleep(0.02)


def new_key() -> str:
    return str(uuid.uuid4())


def clear_of_window_end(seconds: float) -> None:
    """Return once the current UTC clock hour (and so the UTC day) has at least `seconds` left, sleeping into the
    next one if it has not: a test of the callers' limits counts against fixed windows, and one that a new hour
    or day began in the middle of would find room it did not expect."""
    left = 3600 - time.time() % 3600
    if left < seconds:
        time.sleep(left + 0.5)


def webhook_secret(seed: str) -> str:
    return "whsec_" + base64.b64encode(seed.encode()).decode()


# The partners the test session's Secrets Manager knows. acme is mid-rotation: it has a new and an old secret.
PARTNER = "acme"
PARTNER_SECRET = webhook_secret("acme-new-test-secret-not-real")
PARTNER_OLD_SECRET = webhook_secret("acme-old-test-secret-not-real")
OTHER_PARTNER = "globex"
OTHER_PARTNER_SECRET = webhook_secret("globex-test-secret-not-real")
TEST_PARTNERS = {PARTNER: [PARTNER_SECRET, PARTNER_OLD_SECRET], OTHER_PARTNER: [OTHER_PARTNER_SECRET]}


def new_webhook_id() -> str:
    return "msg_" + uuid.uuid4().hex


def partner_event(data: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A `payout_link.create` event in the Standard Webhooks envelope."""
    event = {
        "type": "payout_link.create",
        "timestamp": "2026-11-24T23:50:00Z",
        "data": payout_body() if data is None else data,
    }
    event.update(overrides)
    return event


@dataclass
class SignedWebhook:
    """A partner's request, signed by the standardwebhooks library: the reference implementation, not ours."""

    path: str
    body: bytes
    headers: dict[str, str]


def signed_webhook(
    event: dict[str, Any] | bytes | str | None = None,
    *,
    partner: str = PARTNER,
    secret: str = PARTNER_SECRET,
    webhook_id: str | None = None,
    at: datetime | None = None,
    header_prefix: str = "webhook-",
    headers: dict[str, str] | None = None,
) -> SignedWebhook:
    if event is None:
        event = partner_event()
    body = json.dumps(event) if isinstance(event, dict) else event
    text = body.decode() if isinstance(body, bytes) else body
    webhook_id = webhook_id or new_webhook_id()
    at = at or datetime.now(UTC)
    all_headers = {
        "content-type": "application/json",
        f"{header_prefix}id": webhook_id,
        f"{header_prefix}timestamp": str(int(at.timestamp())),
        f"{header_prefix}signature": Webhook(secret).sign(webhook_id, at, text),
    }
    all_headers.update(headers or {})
    return SignedWebhook(f"/webhooks/{partner}/payout-links", text.encode(), all_headers)


PHONE, EMAIL = "5555550123", "ada@example.com"


# The request headers the API's CORS admits: its own, and those that frontends' tracing adds unasked (W3C Trace
# Context and Baggage, Sentry). Stated once for the template, the local gateway and the stack's preflights.
CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
)
# The keys of every 201 body, as docs/api.md lists them: always all present, nothing else.
LINK_KEYS = {
    "id",
    "created",
    "link",
    "amount",
    "status",
    "payee",
    "delivery",
    "tax_exempt",
    "claimed_user_id",
    "flow_id",
    "metadata",
}


def payout_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 2500,
        "payee": {"country_code": "1", "phone_number": PHONE, "first_name": "Ada", "email": EMAIL},
        "delivery": {"method": "sms", "message": "Your payout is ready"},
        "metadata": {"order": "A-1001"},
    }
    body.update(overrides)
    return body


def never_logged(request_headers: dict[str, str]) -> list[str]:
    """What must never reach a log line: the Dots credentials, every partner secret, and what the request
    carried: its bearer token, its webhook signatures, the payee's phone number and email."""
    webhook_secrets = [secret for secrets in TEST_PARTNERS.values() for secret in secrets]
    values = [
        PHONE,
        EMAIL,
        DEMO_API_KEY,
        DEMO_CLIENT_ID,
        base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_API_KEY}".encode()).decode(),
        *webhook_secrets,
        *(secret.removeprefix("whsec_") for secret in webhook_secrets),
    ]
    headers = {name.lower(): value for name, value in request_headers.items()}
    if "authorization" in headers:
        values += [headers["authorization"], headers["authorization"].removeprefix("Bearer ")]
    for name in ("webhook-signature", "svix-signature"):
        if name in headers:
            values += [headers[name], *(entry.partition(",")[2] for entry in headers[name].split())]
    return [value for value in values if len(value) >= 6]


@contextlib.contextmanager
def function_logs() -> Iterator[io.StringIO]:
    """What the function's logger writes (one JSON line per entry), exactly as CloudWatch would get it.

    Powertools binds its handler to the stdout of the moment it was imported, before any capsys or capfd: the
    handler's stream is swapped for this block instead."""
    from payout_links.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


# Every metric the function emits (namespace PayoutLinkProxy): what tests/integration/test_observability.py observes,
# and all that the template's alarms and dashboard may refer to.
FUNCTION_METRICS = {
    "PayoutLinkCreated": "Count",
    "IdempotentReplay": "Count",
    "IdempotencyConflict": "Count",
    "ValidationRejected": "Count",
    "CredentialsRefreshed": "Count",
    "UpstreamLatency": "Milliseconds",
    # A failed attempt by class (upstream.error_metric): a 4xx by what it means, then 5xx and the transport's.
    **{
        f"UpstreamError{outcome}": "Count"
        for outcome in (
            "CredentialsRejected",
            "RateLimited",
            "RequestRefused",
            "5xx",
            "Timeout",
            "Connection",
            "Unreadable",
        )
    },
    "UpstreamMismatch": "Count",
    # A create's mismatched link, canceled at the upstream or no longer cancelable (service.py).
    "MismatchedLinkCanceled": "Count",
    "MismatchedLinkNotCanceled": "Count",
    "UpstreamLinkConflict": "Count",
    "PayoutLinkRead": "Count",
    "PayoutLinkCanceled": "Count",
    "PayoutLinksListed": "Count",
    "LinkOwnershipRefused": "Count",
    "WebhookRefused": "Count",
    # Partners refused because their webhook secret is another partner's too, once per read of the secret.
    "PartnerSecretShared": "Count",
    # Partners left out because their entry in the partner secrets cannot be used, once per read of the secret.
    "PartnerSecretUnusable": "Count",
    # With the refusing limit as a second dimension (limits.record_refusal), never the caller.
    "LimitExceeded": "Count",
    # A 503 dependency-unavailable, with the failing AWS service as a second dimension (`dependency`).
    "DependencyUnavailable": "Count",
    "ColdStart": "Count",
    # The settler's, one sample per run (settler.py): what it found due and what became of each resend, how many
    # intents are stranded (all of them, not this run's), and the age of the oldest due intent.
    "IntentsDue": "Count",
    "IntentsResent": "Count",
    "IntentsSettled": "Count",
    "IntentsReleased": "Count",
    "IntentsStillUnknown": "Count",
    "StrandedIntents": "Count",
    "OldestDueIntentAge": "Seconds",
}


@contextlib.contextmanager
def emitted_metrics() -> Iterator[list[dict[str, Any]]]:
    """The CloudWatch EMF documents the function prints in this block, parsed. Powertools Metrics prints them to
    whatever `sys.stdout` is when it flushes (at the end of each invocation), unlike the logger, whose stream was
    bound at import; so redirecting stdout catches the metrics and nothing else."""
    documents: list[dict[str, Any]] = []
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield documents
    documents.extend(json.loads(line) for line in buffer.getvalue().splitlines())


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes
    # API Gateway's id of the request: the answer's `apigw-requestid` header, or the event's `requestId` when the
    # handler was called in-process.
    request_id: str | None = None

    def __post_init__(self) -> None:
        self.headers = {name.lower(): value for name, value in self.headers.items()}
        if self.request_id is None:
            self.request_id = self.headers.get("apigw-requestid")

    def json(self) -> Any:
        return json.loads(self.body)

    def is_problem(self) -> bool:
        """An RFC 9457 body whose status matches the HTTP status, carrying the request's id for a user to quote."""
        if self.headers.get("content-type") != "application/problem+json":
            return False
        problem = self.json()
        return (
            problem.get("status") == self.status
            and {"type", "title", "status", "detail"} <= problem.keys()
            and self.request_id is not None
            and problem.get("request_id") == self.request_id
            and "Traceback" not in self.body.decode()
        )

    def body_but_request_id(self) -> bytes:
        """The body with this request's id blanked out: what two answers share when they reveal the same thing."""
        assert self.request_id, "an answer through API Gateway has a request id"
        quoted = json.dumps(self.request_id).encode()
        assert self.body.count(quoted) == 1, self.body
        return self.body.replace(quoted, b'"-"')


@functools.cache
def template_routes() -> tuple[Route, ...]:
    """The routes of template.yaml, read once per session."""
    return tuple(routes_from_template(load_template(TEMPLATE_PATH), FUNCTION))


def http_event(
    method: str,
    path: str,
    *,
    body: bytes | str | dict | list | None = None,
    headers: dict[str, str] | None = None,
    route: Route | None = None,
    base64_encoded: bool = False,
    query: dict[str, str] | str = "",
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway would send for this request, built by the local gateway's code: the one
    way every test tier makes an event.

    On a route behind the JWT authorizer, a token the gateway would accept (the session issuer's: `token()`) puts
    its claims in the event, as strings; any other token, or none, leaves the event without claims (API Gateway
    would refuse the request: such an event tests the function's own 401). The route is the template's route for
    `method` and `path`, or `route` for a request no route of the template takes (the router's own tests). The
    gateway passes a text body as text and any other body base64; `base64_encoded` sends even a text body base64,
    as API Gateway does for a binary media type. `query` is the query string, raw or as parameters to encode. A
    test of an event API Gateway never sends builds one with this, then changes the dict."""
    if isinstance(body, dict | list):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else (body or b"")
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    if route is None:
        route = next((candidate for candidate in template_routes() if candidate.match(method, path) is not None), None)
        assert route is not None, f"no route {method} {path} in template.yaml"
    parameters = route.match(method, path) or {}
    raw_query = query if isinstance(query, str) else urlencode(query)
    verdict = session_authorizer().verify(lowered.get("authorization")) if route.jwt_protected else None
    authorized = verdict if isinstance(verdict, Authorized) else None
    request_id = uuid.uuid4().hex
    event = build_event(route, parameters, method, path, raw_query, lowered, raw, "127.0.0.1", request_id, authorized)
    if base64_encoded and raw and not event["isBase64Encoded"]:
        event.update(body=base64.b64encode(raw).decode("ascii"), isBase64Encoded=True)
    return event


def frontend_headers(
    *, key: str | None = "new", sub: str | None = "user-1", headers: dict[str, str] | None = None
) -> dict[str, str]:
    """A frontend's headers: JSON, a bearer token for `sub`, and `key` as Idempotency-Key ("new": a fresh one);
    `headers` adds or overrides."""
    all_headers = {"content-type": "application/json"}
    if sub is not None:
        all_headers["authorization"] = f"Bearer {token(sub)}"
    if key is not None:
        all_headers["idempotency-key"] = new_key() if key == "new" else key
    all_headers.update(headers or {})
    return all_headers


def create_event(
    body: dict | bytes | str | None = None,
    *,
    key: str | None = "new",
    sub: str | None = "user-1",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST /payout-links as a frontend (see `frontend_headers`), as API Gateway would hand it to the function."""
    all_headers = frontend_headers(key=key, sub=sub, headers=headers)
    return http_event("POST", "/payout-links", body=payout_body() if body is None else body, headers=all_headers)


def http_result(response: dict[str, Any], event: dict[str, Any]) -> HttpResult:
    """What the caller sees of the function's answer to `event`."""
    return HttpResult(
        status=response["statusCode"],
        headers={name.lower(): value for name, value in (response.get("headers") or {}).items()},
        body=(response.get("body") or "").encode(),
        request_id=event["requestContext"]["requestId"],
    )


# What EventBridge sends a function on a schedule (the handler does not read it).
SCHEDULED_EVENT = {
    "version": "0",
    "id": "00000000-0000-0000-0000-000000000000",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-07T00:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {},
}


class InProcessFunction:
    """The Lambda handler called in this process with payload 2.0 events, as the local gateway builds them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def reset_container(self) -> None:
        """Forget every per-container cache, as a new execution environment would start without them, and let
        the next invocation be a cold start for Powertools' logger and metrics too."""
        from payout_links import service

        service.reset()

    def set_env(self, **values: str) -> None:
        """Change the function's configuration; takes effect in the next (cold) container."""
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)
        self.reset_container()

    def invoke(self, event: dict[str, Any], *, timeout_seconds: float = 20.0) -> HttpResult:
        from payout_links.app import lambda_handler

        context = LocalLambdaContext.from_environment(timeout_seconds, event["requestContext"]["requestId"])
        return http_result(lambda_handler(event, context), event)

    def settle(self, *, timeout_seconds: float = 60.0) -> dict[str, Any]:
        """One run of the settler (the template's scheduled SettlerFunction) in this container, as EventBridge
        invokes it; its report."""
        from payout_links.settler import lambda_handler

        context = LocalLambdaContext.from_environment(timeout_seconds, uuid.uuid4().hex)
        return lambda_handler(SCHEDULED_EVENT, context)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | str = "",
        timeout_seconds: float = 20.0,
    ) -> HttpResult:
        event = http_event(method, path, body=body, headers=headers, query=query)
        return self.invoke(event, timeout_seconds=timeout_seconds)

    def create(
        self,
        body: dict | bytes | str | None = None,
        *,
        key: str | None = "new",
        sub: str | None = "user-1",
        headers: dict[str, str] | None = None,
        timeout_seconds: float = 20.0,
    ) -> HttpResult:
        """POST /payout-links as a frontend; see `create_event`."""
        return self.invoke(create_event(body, key=key, sub=sub, headers=headers), timeout_seconds=timeout_seconds)

    def webhook(self, event: dict[str, Any] | bytes | str | None = None, **signing: Any) -> HttpResult:
        """POST /webhooks/{partner}/payout-links as a partner; see `signed_webhook`."""
        request = signed_webhook(event, **signing)
        return self.request("POST", request.path, body=request.body, headers=request.headers)


@dataclass
class RunningStack:
    process: subprocess.Popen
    url: str
    log_path: Path
    banner: str
    _stopped: bool = field(default=False, repr=False)

    @property
    def worker_pids(self) -> list[int]:
        found = re.search(r"execution environments: ([\d, ]+)", self.banner)
        return [int(pid) for pid in found.group(1).split(",")] if found else []

    @property
    def control_url(self) -> str:
        """The stack's control API (docs/local-stack.md), on a loopback port of its own."""
        found = re.search(r"control: (http://127\.0\.0\.1:\d+)", self.banner)
        assert found, f"the stack's banner names no control API:\n{self.banner}"
        return found.group(1)

    def schedules(self) -> dict[str, Any]:
        """The scheduled functions: their events and periods, whether a run is under way, their environment's PID."""
        return httpx.get(f"{self.control_url}/schedules", timeout=10).json()

    def run_schedule(self, function: str, *, timeout: float = 120) -> dict[str, Any]:
        """Run the scheduled function `function` (its logical id) now, after any run under way; return, once the
        run is over, what its handler returned. A failed run fails the test, with the run's error."""
        answer = httpx.post(f"{self.control_url}/schedules/{function}/run", timeout=timeout)
        assert answer.status_code == 200, f"{function}'s run: {answer.status_code} {answer.text}"
        return answer.json()["result"]

    def stop(self) -> int:
        if not self._stopped:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
            self._stopped = True
        return self.process.returncode


# What the layer ships, as `make lock` exported it from uv.lock: each package pinned, with its files' hashes.
LAYER_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def canonical_name(name: str) -> str:
    """A distribution's name as the packaging standards compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_layer_requirements(path: Path = LAYER_REQUIREMENTS) -> dict[str, tuple[str, frozenset[str]]]:
    """Each locked package of the layer by canonical name: its version and the sha256 of each of its files."""
    locked: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            name = canonical_name(match[1])
            locked[name] = (match[2], frozenset())
        elif name and (hashes := _HASH.findall(line)):
            version, known = locked[name]
            locked[name] = (version, known | set(hashes))
    return locked


def locked_layer_packages() -> dict[str, str]:
    return {name: version for name, (version, _) in locked_layer_requirements().items()}


# --- a client that retries as the design says ----------------------------------------------------------------------
# docs/api.md ("After a failed create: the safe recipe"): a create answered with no answer at all, a 409
# request-in-progress, a 429 with Retry-After, or a 5xx whose key is not spent (bound, released, or a 5xx without
# key_state: API Gateway's own 500 and 503, an internal error) is sent again with the same key and the same body,
# after Retry-After where there is one; the retry gets the link. Under load such answers are normal (a request that
# waited for an environment past the integration timeout, a dependency slow to answer): a test that sends creates
# while others run takes a create's answer once it is settled, never its first answer, unless that answer is what
# it tests.
RETRY_PAUSE_SECONDS = 0.5  # before a retry when the answer named no Retry-After


def retry_pause(response: httpx.Response, *, cap: float) -> float | None:
    """How long a client waits before sending this create again with the same key and body (Retry-After, at most
    `cap` seconds); None when the answer is final."""
    status = response.status_code
    problem: dict[str, Any] = {}
    if response.headers.get("content-type") == "application/problem+json":
        problem = response.json()
    retry_after = response.headers.get("retry-after", "")
    pause = min(cap, float(retry_after)) if retry_after.isdigit() else min(cap, RETRY_PAUSE_SECONDS)
    if status == 409:
        return pause if problem.get("type", "").endswith(":request-in-progress") else None
    if status == 429:
        return pause if retry_after else None
    if status >= 500:
        return None if problem.get("key_state") == "spent" else pause
    return None


def send_until_settled(
    send: Callable[[], httpx.Response],
    *,
    attempts: int = 10,
    retry_on: set[int] | None = None,
    cap: float = 3.0,
) -> tuple[httpx.Response, list[int | str]]:
    """`send()`, sent again as a client would (`retry_pause`) until its answer is final, at most `attempts` times:
    the last answer, and every answer on the way (each status, or the name of the error when none came). A test
    that is about one retryable answer keeps it: `retry_on` names the statuses that are retried (by default every
    retryable one). When the last attempt got no answer at all, its error is raised."""
    answers: list[int | str] = []
    for attempt in range(1, attempts + 1):
        try:
            response = send()
        except httpx.TransportError as exc:  # no answer: as unknown as a bound key
            answers.append(type(exc).__name__)
            if attempt == attempts:
                raise
            time.sleep(min(cap, RETRY_PAUSE_SECONDS))
            continue
        answers.append(response.status_code)
        pause = retry_pause(response, cap=cap)
        if pause is None or attempt == attempts or (retry_on is not None and response.status_code not in retry_on):
            return response, answers
        time.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


def create_until_settled(
    client: httpx.Client,
    body: dict[str, Any] | None = None,
    *,
    key: str,
    headers: dict[str, str] | None = None,
    sub: str = "user-1",
    attempts: int = 10,
    retry_on: set[int] | None = None,
    cap: float = 3.0,
) -> tuple[httpx.Response, list[int | str]]:
    """POST /payout-links through `client` as frontend `sub` with `key` (`frontend_headers`; `headers` adds or
    overrides), sent again as a client would until settled (`send_until_settled`): the last answer, and all of
    them."""
    all_headers = frontend_headers(key=key, sub=sub, headers=headers)
    body = payout_body() if body is None else body
    return send_until_settled(
        lambda: client.post("/payout-links", json=body, headers=all_headers),
        attempts=attempts,
        retry_on=retry_on,
        cap=cap,
    )


def bench_modules(*names: str) -> list[ModuleType]:
    """Modules of bench/ by name, imported as its scripts import each other: as top-level modules of that folder
    (it is no package). The folder is on sys.path only while they import."""
    folder = str(ROOT / "bench")
    sys.path.insert(0, folder)
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(folder)


def raw_record(aws_clients: Any, table: str, intent: Any) -> dict[str, Any] | None:
    """The intent's item in `table` as DynamoDB has it now (consistent read), None when there is none."""
    dynamodb, _ = aws_clients
    return dynamodb.get_item(TableName=table, Key={"id": {"S": intent.record_id}}, ConsistentRead=True).get("Item")
