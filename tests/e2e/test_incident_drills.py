"""Drills: the local stack run into each incident class an operator must be paged for, one event at a time, until the
template's own alarm for it would fire, judged from what the stack really printed (its EMF lines; for API Gateway's
metrics, the answers the client got) by tests/alarms.py. Each drill says how many events it took: the threshold
parameter's default, since each event adds one. And what the stack logged meanwhile holds no secret, no payee
contact detail and no long caller-chosen value.

- Dots rejects the proxy's credentials (rotated at Dots, not in the secret): `upstream-credentials-rejected`.
- Dots rate limits the proxy (429): `upstream-rate-limited`.
- DynamoDB fails, and Secrets Manager fails (an AWS endpoint answering 503 to every call): `dependency-unavailable`.
- The API answers 5xx (here: Dots failing every attempt): `api-5xx`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.alarms import AlarmRule, Sample, alarm_rule, api_gateway_samples, emf_samples
from tests.conftest import start_stack
from tests.faults.aws_fault_proxy import SERVICE_UNAVAILABLE, AwsFaultProxy
from tests.support import RunningStack, never_logged, new_key, payout_body, signed_webhook, token

pytestmark = pytest.mark.e2e

# The most events a drill sends before it gives up: well above every default threshold.
MOST_EVENTS = 12
# A caller-chosen value longer than this (a token's sub, a partner name in a URL) never reaches a log line whole.
LOGGED_IDENTITY_BOUND = 128
DYNAMODB_OPERATIONS = [
    f"DynamoDB_20120810.{operation}"
    for operation in (
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "TransactWriteItems",
        "TransactGetItems",
        "BatchGetItem",
    )
]
SECRETS_MANAGER_OPERATIONS = ["secretsmanager.GetSecretValue"]


class Drill:
    """Events sent to a stack, what its log gained meanwhile, and the alarm judged after each event."""

    def __init__(self, stack: RunningStack, alarm: AlarmRule) -> None:
        self.stack = stack
        self.alarm = alarm
        self._start = stack.log_path.stat().st_size
        self.sent: list[dict[str, str]] = []  # every request's headers
        self.statuses: list[int] = []
        self.values: list[float] = []  # the alarm's value after each event

    def log_text(self) -> str:
        with self.stack.log_path.open("rb") as log:
            log.seek(self._start)
            return log.read().decode()

    def samples(self) -> list[Sample]:
        return emf_samples(self.log_text()) + api_gateway_samples(self.statuses)

    def until_it_fires(self, event: Callable[[], httpx.Response], *, expected_status: int) -> int:
        """Send `event` until the alarm fires; the number of events it took."""
        for _ in range(MOST_EVENTS):
            answer = event()
            self.sent.append(dict(answer.request.headers))
            self.statuses.append(answer.status_code)
            assert answer.status_code == expected_status, answer.text
            self.values.append(self.alarm.value(self.samples()))
            if self.alarm.fires(self.samples()):
                return len(self.statuses)
        raise AssertionError(f"{self.alarm.name} did not fire after {MOST_EVENTS} events: {self.values}")

    def assert_fired_after_a_handful(self, events: int) -> None:
        """Each event added one to the alarm's value, and the alarm fired at its threshold, not before."""
        assert self.values == [float(n) for n in range(1, events + 1)], self.values
        assert events == math.ceil(self.alarm.threshold), (self.alarm.name, events, self.alarm.threshold)

    def assert_the_alarms_metrics_were_emitted_as_it_selects_them(self) -> None:
        """Every value the alarm counted came under exactly its dimension set; none of its metrics' values went
        under another set (which CloudWatch would keep apart, and the alarm would never see)."""
        samples = self.samples()
        for metric in self.alarm.metrics.values():
            if metric.namespace == "AWS/ApiGateway":
                continue
            emitted = [s for s in samples if (s.namespace, s.name) == (metric.namespace, metric.name)]
            selected = {tuple(sorted(m.dimensions)) for m in self.alarm.metrics.values() if m.name == metric.name}
            assert all(tuple(sorted(sample.dimensions)) in selected for sample in emitted), emitted

    def assert_logs_hold_nothing_private(self, caller_values: tuple[str, ...] = ()) -> None:
        text = self.log_text()
        for headers in self.sent:
            for value in never_logged(headers):
                assert value not in text, f"the stack's logs carry {value[:12]}..."
        for value in caller_values:
            if len(value) > LOGGED_IDENTITY_BOUND:
                assert value not in text, f"the stack's logs carry a caller value of {len(value)} characters"
        for line in text.splitlines():
            if line.startswith('{"level"'):
                entry = json.loads(line)
                assert len(str(entry.get("caller", ""))) <= LOGGED_IDENTITY_BOUND + len("partner:"), entry["caller"]


def create(api: httpx.Client, sub: str = "drill-user") -> httpx.Response:
    headers = {"authorization": f"Bearer {token(sub)}", "idempotency-key": new_key()}
    return api.post("/payout-links", json=payout_body(), headers=headers)


@pytest.fixture
def api(stack: RunningStack, upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def test_drill_dots_rejects_the_proxys_credentials(stack, api, upstream):
    upstream.set_credentials("rotated-at-dots", "the-secret-did-not-follow")
    drill = Drill(stack, alarm_rule("UpstreamCredentialsRejectedAlarm"))

    events = drill.until_it_fires(lambda: create(api), expected_status=502)

    drill.assert_fired_after_a_handful(events)
    assert events == 3  # three failing creates: each is a 401, a re-read of the secret, and a 401 again
    drill.assert_the_alarms_metrics_were_emitted_as_it_selects_them()
    drill.assert_logs_hold_nothing_private()


def test_drill_dots_rate_limits_the_proxy(stack, api, upstream):
    upstream.inject({"status": 429, "retry_after": "30", "count": MOST_EVENTS})
    drill = Drill(stack, alarm_rule("UpstreamRateLimitedAlarm"))

    events = drill.until_it_fires(lambda: create(api), expected_status=429)

    drill.assert_fired_after_a_handful(events)
    assert events == 3
    drill.assert_the_alarms_metrics_were_emitted_as_it_selects_them()
    drill.assert_logs_hold_nothing_private()


def test_drill_the_api_answers_5xx(stack, api, upstream):
    """Dots fails every attempt (3 per create): 502 with the key bound. The API's 5xx count pages after three."""
    upstream.inject({"status": 500, "count": 3 * MOST_EVENTS})
    drill = Drill(stack, alarm_rule("ApiServerErrorsAlarm"))

    events = drill.until_it_fires(lambda: create(api), expected_status=502)

    drill.assert_fired_after_a_handful(events)
    assert events == 3
    drill.assert_logs_hold_nothing_private()


# --- dependency outages: a stack whose DynamoDB and Secrets Manager endpoint is a proxy that fails on demand ---------


@pytest.fixture(scope="module")
def aws_faults(aws_endpoint: str) -> Iterator[AwsFaultProxy]:
    proxy = AwsFaultProxy(aws_endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def faulty_stack(
    aws_resources, aws_endpoint: str, dots, aws_faults: AwsFaultProxy, tmp_path_factory
) -> Iterator[RunningStack]:
    """A stack whose functions reach DynamoDB and Secrets Manager through `aws_faults` (the stack itself creates its
    tables and secrets directly). One execution environment, so that no other holds credentials read before."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("faulty-stack")),
        AWS_ENDPOINT_URL=aws_endpoint,
        AWS_ENDPOINT_URL_DYNAMODB=aws_faults.endpoint,
        AWS_ENDPOINT_URL_SECRETS_MANAGER=aws_faults.endpoint,
        PAYOUT_API_BASE_URL=dots.base_url,
        PAYOUT_API_TIMEOUT_SECONDS="1",
        LAMBDA_TIMEOUT_SECONDS="12",
        LOCAL_CONCURRENCY="1",
    )
    yield running
    running.stop()


@pytest.fixture
def faulty_api(faulty_stack: RunningStack, upstream, aws_faults: AwsFaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty_stack.url, timeout=30) as client:
        yield client
    aws_faults.heal()
    assert aws_faults.wait_idle(timeout=30)


@pytest.mark.parametrize(
    ("operations", "dependency"),
    [(SECRETS_MANAGER_OPERATIONS, "secrets-manager"), (DYNAMODB_OPERATIONS, "dynamodb")],
    ids=["secrets-manager", "dynamodb"],
)
def test_drill_a_dependency_is_down(faulty_stack, faulty_api, aws_faults, operations, dependency):
    """Every call to the service answers 503 (botocore retries it, then gives up): each create is a 503
    dependency-unavailable, counted with the failing service as its `dependency`. The Secrets Manager drill runs
    first, on an environment that has not read the credentials yet (they are kept 5 minutes once read)."""
    for operation in operations:
        aws_faults.fail(operation, error=SERVICE_UNAVAILABLE)
    drill = Drill(faulty_stack, alarm_rule("DependencyUnavailableAlarm"))

    events = drill.until_it_fires(lambda: create(faulty_api), expected_status=503)

    drill.assert_fired_after_a_handful(events)
    assert events == 3
    counted = [s for s in drill.samples() if s.name == "DependencyUnavailable"]
    assert {s.dimensions["dependency"] for s in counted} == {dependency}
    drill.assert_the_alarms_metrics_were_emitted_as_it_selects_them()
    drill.assert_logs_hold_nothing_private()


def test_a_drills_logs_hold_no_long_caller_chosen_value(stack, api, upstream):
    """A stranger chooses the partner name in a webhook's URL, and an identity provider a token's sub: neither
    reaches a log line whole when it is longer than LOGGED_IDENTITY_BOUND."""
    upstream.inject({"status": 500, "count": 3})
    drill = Drill(stack, alarm_rule("ApiServerErrorsAlarm"))
    long_sub = "s" * 300
    long_partner = "p" * 300
    answers: list[httpx.Response] = [create(api, sub=long_sub)]
    request = signed_webhook(partner=long_partner)
    answers.append(api.post(request.path, content=request.body, headers=request.headers))
    drill.sent += [dict(answer.request.headers) for answer in answers]

    assert [answer.status_code for answer in answers] == [502, 401]
    drill.assert_logs_hold_nothing_private((long_sub, long_partner))
