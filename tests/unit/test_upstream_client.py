"""The Dots client: statuses mapped to problems, retries bounded by count and deadline, one key on every attempt.

The client and httpx are real; only the transport (httpx's own `MockTransport`), the clock, `sleep` and the
credentials store are stand-ins, so nothing opens a socket and no test waits.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from payout_links.credentials import PayoutApiCredentials
from payout_links.observability import metrics
from payout_links.outcomes import CreateFailed, Outcome
from payout_links.problems import (
    LinkLostUpstream,
    NotCancelable,
    Problem,
    UpstreamFailed,
    UpstreamMismatch,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimedOut,
)
from payout_links.upstream import (
    BACKOFF_CAP_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    MIN_ATTEMPT_SECONDS,
    PayoutApiClient,
)

pytestmark = pytest.mark.unit

URL = "https://dots.test/api/v2/payout-links"
START = 1_000.0
DERIVED_KEY = "86368ff7-0278-5d36-908c-0ac2fd48582f"
PAYLOAD = {
    "amount": 2500,
    "payee": {"country_code": "1", "phone_number": "5555550123"},
    "metadata": {"order": "A-1001"},
    "idempotency_key": DERIVED_KEY,
}
OLD = PayoutApiCredentials(client_id="pk_live_client_0001", api_key="sk_live_secret_old_0001")
NEW = PayoutApiCredentials(client_id="pk_live_client_0001", api_key="sk_live_secret_new_0002")
CREATED = {
    "id": "pl_123",
    "created": "2024-05-01T12:34:56.123456",
    "link": "https://pay.example/l/pl_123",
    "amount": 2500.0,
    "status": "CREATED",
    "metadata": '{"order": "A-1001"}',
    "unexpected": "dropped",
}
NORMALIZED = {
    "id": "pl_123",
    "created": "2024-05-01T12:34:56.123Z",
    "link": "https://pay.example/l/pl_123",
    "amount": 2500,
    "status": "created",
    "payee": None,
    "delivery": None,
    "tax_exempt": None,
    "claimed_user_id": None,
    "flow_id": None,
    "metadata": {"order": "A-1001"},
}


LINK_ID = "pl_123"
LINK_URL = f"{URL}/{LINK_ID}"


def stored(status: str) -> dict[str, Any]:
    """The link as the upstream answers a read or a cancel of it, in `status`."""
    return {**CREATED, "status": status.upper()}


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSleep:
    clock: FakeClock
    delays: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


class RotatingCredentials:
    """The store's interface: `get()` the current credentials, `refresh()` re-reads them (a rotation)."""

    def __init__(self) -> None:
        self.current = OLD
        self.refreshes = 0

    def get(self, *, deadline: float | None = None) -> PayoutApiCredentials:
        return self.current

    def refresh(self, *, deadline: float | None = None) -> PayoutApiCredentials:
        self.refreshes += 1
        self.current = NEW
        return self.current


@dataclass
class Attempt:
    method: str
    url: str
    started_at: float
    timeout: dict[str, float]
    authorization: str
    content_type: str
    payload: dict[str, Any] | None  # None: a read or a cancel, which send no body


# One scripted answer: a response, an httpx transport error class to raise, or either after some seconds pass
# (at most the attempt's timeout: httpx gives up by then).
Answer = httpx.Response | type[httpx.TransportError] | tuple[float, "Answer"]


class ScriptedUpstream:
    """Answers each attempt with the next scripted answer (the last one repeats) and records what was sent."""

    def __init__(self, clock: FakeClock, answers: list[Answer]) -> None:
        self.clock = clock
        self.answers = answers
        self.attempts: list[Attempt] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(
            Attempt(
                method=request.method,
                url=str(request.url),
                started_at=self.clock(),
                timeout=request.extensions["timeout"],
                authorization=request.headers["authorization"],
                content_type=request.headers.get("content-type", ""),
                payload=json.loads(request.content) if request.content else None,
            )
        )
        answer = self.answers[min(len(self.attempts), len(self.answers)) - 1]
        if isinstance(answer, tuple):
            seconds, answer = answer
            self.clock.advance(min(seconds, max(request.extensions["timeout"].values())))  # httpx gives up then
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("scripted transport failure", request=request)


@dataclass
class Harness:
    client: PayoutApiClient
    upstream: ScriptedUpstream
    credentials: RotatingCredentials
    clock: FakeClock
    sleep: RecordingSleep
    outcome: Outcome | None = None

    def create(self, *, seconds_left: float = 20.0) -> dict[str, Any]:
        return self.client.create_payout_link(dict(PAYLOAD), deadline=self.clock() + seconds_left)

    def fail(self, *, seconds_left: float = 20.0) -> Problem:
        """The problem a failed create answers; `outcome` then says whether a link may exist."""
        with pytest.raises(CreateFailed) as caught:
            self.create(seconds_left=seconds_left)
        self.outcome = caught.value.outcome
        return caught.value.problem

    def read(self, *, seconds_left: float = 20.0) -> dict[str, Any]:
        return self.client.retrieve_payout_link(LINK_ID, deadline=self.clock() + seconds_left)

    def cancel(self, *, seconds_left: float = 20.0) -> dict[str, Any]:
        return self.client.cancel_payout_link(LINK_ID, deadline=self.clock() + seconds_left)

    def refusal(self, action: str, *, seconds_left: float = 20.0) -> Problem:
        """The problem a failed read or cancel raises: reads and cancels raise it as it is."""
        with pytest.raises(Problem) as caught:
            getattr(self, action)(seconds_left=seconds_left)
        return caught.value

    def requests(self) -> list[tuple[str, str]]:
        return [(attempt.method, attempt.url) for attempt in self.upstream.attempts]


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    # The handler flushes metrics after every invocation; here nothing does, so keep the buffer per test.
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Harness]]:
    clients: list[httpx.Client] = []

    def build(*answers: Answer, attempt_timeout: float = 8.0, max_attempts: int = 3) -> Harness:
        clock = FakeClock()
        scripted = ScriptedUpstream(clock, list(answers))
        http = httpx.Client(transport=httpx.MockTransport(scripted))
        clients.append(http)
        credentials = RotatingCredentials()
        sleep = RecordingSleep(clock)
        client = PayoutApiClient(
            http,
            URL,
            credentials,
            attempt_timeout=attempt_timeout,
            max_attempts=max_attempts,
            clock=clock,
            sleep=sleep,
        )
        return Harness(client, scripted, credentials, clock, sleep)

    yield build
    for http in clients:
        http.close()


def respond(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers={"content-type": "application/json", **headers})
    return httpx.Response(status, json=body if body is not None else {"message": "upstream says no"}, headers=headers)


def basic(credentials: PayoutApiCredentials) -> str:
    return "Basic " + base64.b64encode(f"{credentials.client_id}:{credentials.api_key}".encode()).decode()


@pytest.mark.parametrize("status", [200, 201])
def test_a_2xx_answer_is_normalized(upstream: Callable[..., Harness], status: int) -> None:
    harness = upstream(respond(status, CREATED))

    assert harness.create() == NORMALIZED

    [attempt] = harness.upstream.attempts
    assert (attempt.method, attempt.url) == ("POST", URL)
    assert attempt.payload == PAYLOAD
    assert attempt.content_type == "application/json"
    assert attempt.authorization == basic(OLD)
    assert harness.sleep.delays == []


def test_the_legacy_envelope_is_normalized_too(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(200, {"success": True, "payout_link": CREATED}))

    assert harness.create() == NORMALIZED


@pytest.mark.parametrize("status", [401, 403])
def test_a_401_or_403_rereads_the_credentials_once_then_succeeds(upstream: Callable[..., Harness], status: int) -> None:
    harness = upstream(respond(status), respond(201, CREATED))

    assert harness.create() == NORMALIZED

    assert harness.credentials.refreshes == 1
    assert [attempt.authorization for attempt in harness.upstream.attempts] == [basic(OLD), basic(NEW)]


def test_a_credentials_rotation_does_not_use_up_the_attempts(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(401), respond(500), respond(201, CREATED), max_attempts=2)

    assert harness.create() == NORMALIZED
    assert len(harness.upstream.attempts) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_second_401_or_403_is_a_502_that_reveals_no_credentials(
    upstream: Callable[..., Harness], status: int
) -> None:
    harness = upstream(respond(status, {"error": "invalid api key"}))

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert harness.credentials.refreshes == 1
    assert harness.outcome is Outcome.NOT_CREATED
    assert len(harness.upstream.attempts) == 2
    rendered = json.dumps(problem.to_dict()) + str(problem) + repr(problem)
    for secret in (OLD.client_id, OLD.api_key, NEW.api_key, basic(OLD).split()[1], basic(NEW).split()[1]):
        assert secret not in rendered


def test_a_429_passes_on_the_upstreams_retry_after(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(429, **{"Retry-After": "7"}))

    problem = harness.fail()

    assert isinstance(problem, UpstreamRateLimited)
    assert problem.status == 429
    assert problem.retry_after == 7
    assert harness.outcome is Outcome.NOT_CREATED
    assert problem.headers() == {"Retry-After": "7"}
    assert len(harness.upstream.attempts) == 1  # a rate limit is not hammered with retries


def test_a_429_without_retry_after_gets_the_default(upstream: Callable[..., Harness]) -> None:
    problem = upstream(respond(429)).fail()

    assert isinstance(problem, UpstreamRateLimited)
    assert problem.retry_after == UpstreamRateLimited.retry_after
    assert problem.headers() == {"Retry-After": str(UpstreamRateLimited.retry_after)}


def test_a_429_with_an_http_date_retry_after_waits_until_then(upstream: Callable[..., Harness]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    problem = upstream(respond(429, **{"Retry-After": when})).fail()

    assert isinstance(problem, UpstreamRateLimited)
    assert 115 <= problem.retry_after <= 121


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("86400000", MAX_RETRY_AFTER_SECONDS),
        ("soon", UpstreamRateLimited.retry_after),
        ("-3", UpstreamRateLimited.retry_after),
        ("2.5", UpstreamRateLimited.retry_after),
    ],
    ids=["huge", "word", "negative", "fractional"],
)
def test_a_429_with_an_odd_retry_after_is_bounded_or_defaulted(
    upstream: Callable[..., Harness], header: str, expected: int
) -> None:
    problem = upstream(respond(429, **{"Retry-After": header})).fail()

    assert isinstance(problem, UpstreamRateLimited)
    assert problem.retry_after == expected


def test_a_429_with_a_non_ascii_digit_retry_after_is_still_a_429(upstream: Callable[..., Harness]) -> None:
    # The header arrives as the single Latin-1 byte 0xB2 ("²"): unreadable, so the default delay applies.
    answer = httpx.Response(429, headers=[(b"Retry-After", b"\xb2")], json={"message": "slow down"})

    problem = upstream(answer).fail()

    assert isinstance(problem, UpstreamRateLimited)
    assert problem.retry_after == UpstreamRateLimited.retry_after


def test_a_500_then_a_201_succeeds_on_the_second_attempt(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(500), respond(201, CREATED))

    assert harness.create() == NORMALIZED

    assert len(harness.upstream.attempts) == 2
    assert len(harness.sleep.delays) == 1
    assert 0 <= harness.sleep.delays[0] <= BACKOFF_CAP_SECONDS


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("max_attempts", [1, 3, 5])
def test_a_5xx_every_time_is_a_502_after_max_attempts(
    upstream: Callable[..., Harness], status: int, max_attempts: int
) -> None:
    harness = upstream(respond(status, {"trace": "NullPointerException at Payouts.java:42"}), max_attempts=max_attempts)

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert "NullPointerException" not in problem.detail
    assert harness.outcome is Outcome.UNKNOWN
    assert len(harness.upstream.attempts) == max_attempts
    assert len(harness.sleep.delays) == max_attempts - 1
    assert all(0 <= delay <= BACKOFF_CAP_SECONDS for delay in harness.sleep.delays)


def test_every_attempt_sends_the_same_payload_and_key(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(503), httpx.ReadTimeout, respond(401), respond(201, CREATED))

    assert harness.create() == NORMALIZED

    sent = [attempt.payload for attempt in harness.upstream.attempts]
    assert len(sent) == 4
    assert {attempt["idempotency_key"] for attempt in sent} == {DERIVED_KEY}
    assert all(payload == PAYLOAD for payload in sent)


def test_a_timeout_every_time_is_a_504(upstream: Callable[..., Harness]) -> None:
    harness = upstream((8.0, httpx.ReadTimeout))

    problem = harness.fail(seconds_left=20.0)

    assert isinstance(problem, UpstreamTimedOut)
    assert problem.status == 504
    assert harness.clock() <= START + 20.0
    assert harness.outcome is Outcome.UNKNOWN


def test_a_timeout_then_a_201_returns_the_link(upstream: Callable[..., Harness]) -> None:
    harness = upstream((2.0, httpx.ReadTimeout), respond(201, CREATED))

    assert harness.create() == NORMALIZED
    assert len(harness.upstream.attempts) == 2


@pytest.mark.parametrize(
    ("error", "status", "outcome"),
    [
        (httpx.ConnectTimeout, 504, Outcome.NOT_CREATED),
        (httpx.WriteTimeout, 504, Outcome.UNKNOWN),
        (httpx.PoolTimeout, 504, Outcome.NOT_CREATED),
        (httpx.ReadError, 502, Outcome.UNKNOWN),
        (httpx.RemoteProtocolError, 502, Outcome.UNKNOWN),
    ],
)
def test_other_transport_failures_map_to_504_or_502(
    upstream: Callable[..., Harness], error: type[httpx.TransportError], status: int, outcome: Outcome
) -> None:
    harness = upstream(error)

    assert harness.fail().status == status
    assert harness.outcome is outcome  # only a request that never left us certainly made no link


def test_a_connect_error_is_a_502(upstream: Callable[..., Harness]) -> None:
    harness = upstream(httpx.ConnectError)

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert "scripted transport failure" not in problem.detail
    assert harness.outcome is Outcome.NOT_CREATED


def test_a_connect_error_then_a_201_returns_the_link(upstream: Callable[..., Harness]) -> None:
    harness = upstream(httpx.ConnectError, respond(201, CREATED))

    assert harness.create() == NORMALIZED


@pytest.mark.parametrize("seconds_left", [MIN_ATTEMPT_SECONDS - 0.01, 0.0, -5.0])
def test_no_attempt_starts_without_the_minimum_time_left(upstream: Callable[..., Harness], seconds_left: float) -> None:
    harness = upstream(respond(201, CREATED))

    problem = harness.fail(seconds_left=seconds_left)

    assert isinstance(problem, UpstreamTimedOut)
    assert problem.status == 504
    assert harness.upstream.attempts == []
    assert harness.outcome is Outcome.NOT_CREATED


def test_an_attempt_starts_with_just_over_the_minimum_left(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(201, CREATED))

    assert harness.create(seconds_left=MIN_ATTEMPT_SECONDS + 0.05) == NORMALIZED


def test_an_attempt_timeout_below_the_minimum_still_gets_its_attempt(upstream: Callable[..., Harness]) -> None:
    # The minimum is about the time left before the deadline, not about the configured per-attempt timeout.
    harness = upstream(respond(201, CREATED), attempt_timeout=MIN_ATTEMPT_SECONDS / 2)

    assert harness.create() == NORMALIZED
    assert set(harness.upstream.attempts[0].timeout.values()) == {MIN_ATTEMPT_SECONDS / 2}


def test_no_retry_starts_when_the_deadline_is_too_close(upstream: Callable[..., Harness]) -> None:
    harness = upstream((4.7, respond(500)), respond(201, CREATED))

    problem = harness.fail(seconds_left=5.0)

    assert problem.status == 502
    assert len(harness.upstream.attempts) == 1
    assert harness.sleep.delays == []
    assert harness.outcome is Outcome.UNKNOWN


def test_an_attempt_gets_the_configured_timeout_when_time_allows(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(201, CREATED), attempt_timeout=8.0)

    harness.create(seconds_left=25.0)

    assert set(harness.upstream.attempts[0].timeout.values()) == {8.0}


def test_an_attempt_never_waits_past_the_deadline(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(201, CREATED), attempt_timeout=8.0)

    harness.create(seconds_left=3.0)

    assert set(harness.upstream.attempts[0].timeout.values()) == {3.0}


def test_each_attempts_timeout_fits_in_the_time_left(upstream: Callable[..., Harness]) -> None:
    harness = upstream((8.0, httpx.ReadTimeout), attempt_timeout=8.0, max_attempts=5)
    deadline = harness.clock() + 20.0

    with pytest.raises(CreateFailed) as caught:
        harness.client.create_payout_link(dict(PAYLOAD), deadline=deadline)

    assert isinstance(caught.value.problem, UpstreamTimedOut)
    attempts = harness.upstream.attempts
    assert len(attempts) >= 2
    for attempt in attempts:
        assert max(attempt.timeout.values()) <= deadline - attempt.started_at
    assert max(attempts[-1].timeout.values()) < 8.0  # the last attempt was cut short by the deadline
    assert harness.clock() <= deadline


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_request_is_a_422_without_the_upstreams_text(upstream: Callable[..., Harness], status: int) -> None:
    harness = upstream(respond(status, {"error": "payee 5555550123 is blocked by compliance rule 7"}))

    problem = harness.fail()

    assert isinstance(problem, UpstreamRejected)
    assert problem.status == 422
    assert "5555550123" not in json.dumps(problem.to_dict())
    assert len(harness.upstream.attempts) == 1
    assert harness.outcome is Outcome.REFUSED  # the upstream judged it: nothing exists under the key


@pytest.mark.parametrize("status", [404, 409, 302])
def test_an_unexpected_status_is_a_502_without_retry(upstream: Callable[..., Harness], status: int) -> None:
    harness = upstream(respond(status, Location="https://elsewhere.test/"))

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert len(harness.upstream.attempts) == 1
    assert harness.outcome is Outcome.UNKNOWN  # not one of the answers that say "nothing was made"


@pytest.mark.parametrize(
    "body",
    [b"<html>Service OK</html>", b"", b"[]", b'{"ok": true}', b'{"id": null}', b'{"id": "pl_1"', b"\xff\xfe"],
    ids=["html", "empty", "array", "no id", "null id", "truncated", "invalid UTF-8"],
)
def test_an_unreadable_2xx_answer_is_a_502(upstream: Callable[..., Harness], body: bytes) -> None:
    harness = upstream(respond(201, body))

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert harness.outcome is Outcome.UNKNOWN


def test_a_2xx_answer_with_a_corrupt_compressed_body_is_a_502(upstream: Callable[..., Harness]) -> None:
    # Declared gzip, sent plain: httpx fails while reading the body, after the upstream may have created the link.
    answer = httpx.Response(201, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b'{"id": "pl_1"}'))

    harness = upstream(answer)
    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert harness.outcome is Outcome.UNKNOWN


def test_a_2xx_answer_nested_too_deeply_to_parse_is_a_502_not_a_crash(upstream: Callable[..., Harness]) -> None:
    harness = upstream(respond(201, b'{"id": "pl_1", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))

    problem = harness.fail()

    assert isinstance(problem, UpstreamFailed)
    assert problem.status == 502
    assert harness.outcome is Outcome.UNKNOWN


def test_a_2xx_answer_whose_time_leaves_the_calendar_in_utc_is_a_link_without_a_time(
    upstream: Callable[..., Harness],
) -> None:
    harness = upstream(respond(201, {**CREATED, "created": "0001-01-01T00:00:00+01:00"}))

    assert harness.create() == {**NORMALIZED, "created": None}


def test_an_ambiguous_attempt_keeps_the_outcome_unknown_whatever_follows(upstream: Callable[..., Harness]) -> None:
    # The 500 may have come after the upstream made the link; the 422 that follows does not undo that.
    harness = upstream(respond(500), respond(422))

    assert harness.fail().status == 422
    assert harness.outcome is Outcome.UNKNOWN


def test_attempts_that_never_reached_the_upstream_leave_nothing_created(upstream: Callable[..., Harness]) -> None:
    harness = upstream(httpx.ConnectError, respond(429))

    assert harness.fail().status == 429
    assert harness.outcome is Outcome.NOT_CREATED


@pytest.mark.parametrize(
    ("answered", "field"),
    [
        ({"amount": 2499.0}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": 2500.5}, "amount"),
        ({"payee": {"country_code": "1", "phone_number": "5555550999"}}, "payee.phone_number"),
        ({"payee": {"country_code": "44", "phone_number": "5555550123"}}, "payee.country_code"),
        ({"delivery": {"method": "sms", "phone_number": "5555550999"}}, "delivery.phone_number"),
    ],
    ids=["other amount", "no amount", "fractional amount", "other phone", "other country", "other delivery phone"],
)
def test_a_2xx_link_that_contradicts_the_request_is_a_502_mismatch_and_never_retried(
    upstream: Callable[..., Harness], answered: dict[str, Any], field: str
) -> None:
    harness = upstream(respond(201, {**CREATED, **answered}), respond(201, CREATED))

    problem = harness.fail()

    assert isinstance(problem, UpstreamMismatch)
    assert (problem.status, problem.to_dict()["type"]) == (502, "urn:payout-link-proxy:problem:upstream-mismatch")
    assert harness.outcome is Outcome.UNKNOWN
    assert len(harness.upstream.attempts) == 1  # the upstream would hand back the same link for the same key


@pytest.mark.parametrize(
    ("asked", "answered"),
    [
        ({"user_id": "alice"}, {"user_id": "mallory"}),
        ({"tax_exempt": True}, {"tax_exempt": False}),
        ({"metadata": {"order": "A-1001"}}, {"metadata": {"order": "Z-999"}}),
    ],
    ids=["another user", "another tax exemption", "another order"],
)
def test_a_2xx_link_for_another_user_exemption_or_order_is_a_502_mismatch(
    upstream: Callable[..., Harness], asked: dict[str, Any], answered: dict[str, Any]
) -> None:
    harness = upstream(respond(201, {**CREATED, **answered}))

    with pytest.raises(CreateFailed) as caught:
        harness.client.create_payout_link({**PAYLOAD, **asked}, deadline=harness.clock() + 20.0)

    assert isinstance(caught.value.problem, UpstreamMismatch)
    assert caught.value.outcome is Outcome.UNKNOWN


def test_a_link_that_echoes_less_or_tidier_text_matches(upstream: Callable[..., Harness]) -> None:
    """Dots may leave out, trim or re-case what it echoes: a legitimate link must not be stranded as a mismatch."""
    payload = {
        **PAYLOAD,
        "payee": {**PAYLOAD["payee"], "email": "Ada@Example.com", "first_name": " Ada "},
        "delivery": {"method": "sms"},
    }
    echoed = {
        **CREATED,
        "payee": {"country_code": "1", "phone_number": "5555550123", "email": "ada@example.com", "first_name": "ADA"},
        "delivery": {"method": "sms", "email": None},
    }
    harness = upstream(respond(201, echoed))

    link = harness.client.create_payout_link(payload, deadline=harness.clock() + 20.0)

    assert link["id"] == "pl_123"


def test_the_authorization_header_is_basic_client_id_colon_api_key() -> None:
    header = PayoutApiCredentials(client_id="client-1", api_key="key:with:colons").authorization

    scheme, token = header.split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == "client-1:key:with:colons"


def test_credentials_do_not_show_in_their_repr() -> None:
    text = repr(OLD) + str(OLD)

    assert OLD.client_id not in text
    assert OLD.api_key not in text


# -- reading and canceling a link: one request (and a read after a cancel's refusal), never retried ---------------


@pytest.mark.parametrize("action", ["read", "cancel"])
@pytest.mark.parametrize(
    ("answer", "kind", "status"),
    [
        (respond(503), UpstreamFailed, 502),
        (respond(500), UpstreamFailed, 502),
        (httpx.ReadError, UpstreamFailed, 502),
        (httpx.RemoteProtocolError, UpstreamFailed, 502),
        (httpx.ConnectError, UpstreamFailed, 502),
        (respond(404, {"message": "Payout link not found"}), LinkLostUpstream, 404),
        ((8.0, httpx.ReadTimeout), UpstreamTimedOut, 504),
    ],
    ids=["503", "500", "read error", "dropped", "connect error", "404", "timeout"],
)
def test_a_failed_read_or_cancel_maps_as_a_create_does_and_is_not_retried(
    upstream: Callable[..., Harness], action: str, answer: Answer, kind: type[Problem], status: int
) -> None:
    harness = upstream(answer, respond(200, stored("created")))

    problem = harness.refusal(action)

    assert type(problem) is kind and problem.status == status
    method = "GET" if action == "read" else "DELETE"
    assert harness.requests() == [(method, LINK_URL)]  # one request: the caller may simply repeat it
    assert harness.sleep.delays == []


@pytest.mark.parametrize("action", ["read", "cancel"])
def test_a_rate_limited_read_or_cancel_passes_on_the_retry_after(upstream: Callable[..., Harness], action: str) -> None:
    problem = upstream(respond(429, **{"Retry-After": "7"})).refusal(action)

    assert isinstance(problem, UpstreamRateLimited)
    assert problem.headers() == {"Retry-After": "7"}


@pytest.mark.parametrize("action", ["read", "cancel"])
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (respond(200, b"<html>"), UpstreamFailed),
        (respond(200, {"id": "another-link", "status": "created"}), UpstreamMismatch),
    ],
    ids=["unreadable", "another link"],
)
def test_a_2xx_that_is_not_about_the_link_is_a_502(
    upstream: Callable[..., Harness], action: str, answer: httpx.Response, kind: type[Problem]
) -> None:
    # A cancel's 2xx without a readable link is judged by the link read again: the same answer, here.
    problem = upstream(answer).refusal(action)

    assert type(problem) is kind and problem.status == 502


@pytest.mark.parametrize("action", ["read", "cancel"])
def test_a_slow_read_or_cancel_is_a_504_within_the_deadline(upstream: Callable[..., Harness], action: str) -> None:
    harness = upstream((8.0, httpx.ReadTimeout), attempt_timeout=8.0)

    problem = harness.refusal(action, seconds_left=3.0)

    assert isinstance(problem, UpstreamTimedOut)
    assert harness.clock() <= START + 3.0


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("action", ["read", "cancel"])
def test_a_401_or_403_on_a_read_or_cancel_rereads_the_credentials_once(
    upstream: Callable[..., Harness], action: str, status: int
) -> None:
    harness = upstream(respond(status), respond(200, stored("canceled")))

    assert getattr(harness, action)()["status"] == "canceled"

    assert harness.credentials.refreshes == 1
    assert [attempt.authorization for attempt in harness.upstream.attempts] == [basic(OLD), basic(NEW)]


@pytest.mark.parametrize("refusal", [400, 409, 410, 422])
@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("canceled", "canceled"),
        ("claimed", NotCancelable),
        ("reversed", NotCancelable),
        ("expired", NotCancelable),
        ("created", UpstreamFailed),
    ],
    ids=["already canceled", "claimed", "reversed", "expired", "still cancelable"],
)
def test_a_refused_cancel_is_judged_by_the_link_read_again_not_by_the_refusal(
    upstream: Callable[..., Harness], refusal: int, state: str, outcome: str | type[Problem]
) -> None:
    harness = upstream(respond(refusal, {"message": "Payout link is already canceled"}), respond(200, stored(state)))

    if isinstance(outcome, str):
        assert harness.cancel()["status"] == outcome
    else:
        assert type(harness.refusal("cancel")) is outcome
    assert harness.requests() == [("DELETE", LINK_URL), ("GET", LINK_URL)]


@pytest.mark.parametrize(
    "answer",
    [respond(204, b""), respond(200, {"success": True}), respond(200, b"OK")],
    ids=["204", "no link in the body", "text"],
)
def test_a_cancel_answered_without_a_readable_link_is_judged_by_the_link_read_again(
    upstream: Callable[..., Harness], answer: httpx.Response
) -> None:
    harness = upstream(answer, respond(200, stored("canceled")))

    assert harness.cancel() == {**NORMALIZED, "status": "canceled"}
    assert harness.requests() == [("DELETE", LINK_URL), ("GET", LINK_URL)]


@pytest.mark.parametrize(
    ("state", "kind"),
    [("claimed", NotCancelable), ("reversed", NotCancelable), ("expired", NotCancelable), ("created", UpstreamFailed)],
)
def test_a_cancel_answered_with_a_link_not_canceled_is_judged_by_its_state(
    upstream: Callable[..., Harness], state: str, kind: type[Problem]
) -> None:
    harness = upstream(respond(200, stored(state)))

    problem = harness.refusal("cancel")

    assert type(problem) is kind
    assert problem.status == (409 if kind is NotCancelable else 502)
    assert harness.requests() == [("DELETE", LINK_URL)]
