"""The callers' limits, as a property: whatever the interleaving of concurrent creates, their retries, Dots' faults
and the limits' own refusals, a caller's links never pay out more than its limits allow, and no create that
certainly made nothing keeps any of its caller's room.

Each example is one fresh caller with a daily amount of 10,000 cents and 6 links an hour, and a few clients, each a
thread with a plan of creates that it sends, one after another, to a pool of function processes (each a Lambda
container with its own clients and caches; they share the session's moto server and the Dots emulator, as
containers share DynamoDB and Dots). Before a create, a client may queue a Dots fault: the next request to reach
Dots takes it, whichever client's it is, so that faults fall on creates, on retries and on another client's
requests as the interleaving has it. A client retries as clients do: a 409 or a 503 always, with the same key and
body; an answer that leaves the key bound (the outcome is unknown) as often as its plan says; a create it sends
twice at once (a double submit) is sent once more after both answers, to learn where it ended.

Each intent (one key of the caller) ends where its last answer says: created (201), kept (its key bound, or
spent), or released. Then, with the emulator's links as the witness:

1. Every answer is a 201 or a problem+json naming where the key stands (`key_state`), never a 500; a
   limit-exceeded refusal names its limit and has released the key.
2. The caller's day counter holds exactly the cents of its created and kept intents, and its hour counter their
   number: a create that certainly made nothing gave its room back, and nothing else did.
3. The links Dots made for the caller come to at most the daily amount, and number at most the hourly links; each
   is the link of a created or kept intent, and each 201 is one of them.

The emulator answers a queued 422 even for an idempotency key it already holds a link under, which Dots does not
do (it finds the key first): the proxy then rightly releases the key. Such an intent ("refused after its link was
made") is left out of 3, and counted in the run's summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from local_stack.core.workers import WorkerPool
from local_stack.dots_emulator import PAYOUT_LINKS_PATH, DotsEmulator
from payout_links.limits import current_counters
from payout_links.problems import Limit
from tests.conftest import function_env
from tests.support import HttpResult, clear_of_window_end, create_event, http_result, payout_body

pytestmark = pytest.mark.properties

DAILY_AMOUNT_CENTS = 10_000
HOURLY_LINKS = 6
CONTAINERS = 3
FUNCTION_TIMEOUT_SECONDS = 20
RETRY_SECONDS = FUNCTION_TIMEOUT_SECONDS + 10
AMOUNTS = (500, 1_000, 2_500, 4_000, 6_000)
LIMIT_EXCEEDED = "urn:payout-link-proxy:problem:limit-exceeded"
UPSTREAM_REJECTED = "urn:payout-link-proxy:problem:upstream-rejected"
MAX_ATTEMPTS = 2
FAULTS = {
    "500 after create": {"status": 500, "after_create": True},
    "500 after create, every attempt": {"status": 500, "after_create": True, "count": MAX_ATTEMPTS},
    "500 before create, every attempt": {"status": 500, "count": MAX_ATTEMPTS},
    "drop before create": {"drop": True},
    "drop after create, every attempt": {"drop": True, "after_create": True, "count": MAX_ATTEMPTS},
    "429": {"status": 429, "retry_after": "1"},
    "422": {"status": 422},
}

RUN: Counter[str] = Counter()
ANSWERS: Counter[str] = Counter()


@dataclass(frozen=True)
class Create:
    """One create a client sends: its amount, the fault it queues first, how many times it retries an unknown
    outcome, and whether it is submitted twice at once."""

    amount: int
    fault: str | None
    retries: int
    double: bool

    def __repr__(self) -> str:
        extras = [self.fault or "", f"retries {self.retries}" if self.retries else "", "double" if self.double else ""]
        return f"{self.amount}" + "".join(f" [{extra}]" for extra in extras if extra)


creates = st.builds(
    Create,
    amount=st.sampled_from(AMOUNTS),
    fault=st.one_of(st.none(), st.none(), st.sampled_from(list(FAULTS))),
    retries=st.sampled_from([0, 0, 1, 3]),
    double=st.sampled_from([False, False, False, True]),
)
plans = st.lists(st.lists(creates, min_size=1, max_size=5), min_size=2, max_size=4)


@dataclass
class Intent:
    key: str
    amount: int
    answers: list[HttpResult] = field(default_factory=list)
    final: HttpResult | None = None

    @property
    def final_type(self) -> str | None:
        """The problem type of the last answer; None for a 201."""
        assert self.final is not None
        return None if self.final.status == 201 else self.final.json()["type"]

    @property
    def state(self) -> str:
        assert self.final is not None
        if self.final.status == 201:
            return "created"
        return "kept" if self.final.json()["key_state"] in ("bound", "spent") else "released"


def is_retryable(result: HttpResult) -> bool:
    return result.status in (409, 503)


def is_unknown(result: HttpResult) -> bool:
    return result.status != 201 and result.json().get("key_state") == "bound"


class Example:
    """One example: a fresh caller, its clients' threads, and what they were answered."""

    def __init__(self, pool: WorkerPool, upstream: DotsEmulator) -> None:
        self.pool = pool
        self.upstream = upstream
        self.sub = f"limits-{uuid.uuid4().hex}"
        self.intents: list[Intent] = []
        self.lock = threading.Lock()

    def send(self, intent: Intent) -> HttpResult:
        """The create, as a client sends it: again while the answer is 409 or 503, for as long as a lock can be
        held (the function's timeout: a lock whose holder could not drop it expires with the invocation)."""
        body = payout_body(amount=intent.amount, metadata={"intent": intent.key})
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            event_ = create_event(body, key=intent.key, sub=self.sub)
            result = http_result(self.pool.invoke(event_, uuid.uuid4().hex), event_)
            with self.lock:
                intent.answers.append(result)
            if not is_retryable(result):
                return result
            assert time.monotonic() < deadline, [(answer.status, answer.body) for answer in intent.answers]
            time.sleep(0.1)

    def client(self, plan: list[Create]) -> None:
        for create in plan:
            intent = Intent(key=str(uuid.uuid4()), amount=create.amount)
            with self.lock:
                self.intents.append(intent)
            if create.fault is not None:
                self.upstream.inject(FAULTS[create.fault])
            if create.double:
                concurrently(lambda intent=intent: self.send(intent), lambda intent=intent: self.send(intent))
                result = self.send(intent)  # after both: where the intent ended
            else:
                result = self.send(intent)
            for _ in range(create.retries):
                if not is_unknown(result):
                    break
                result = self.send(intent)
            intent.final = result

    def run(self, plans: list[list[Create]]) -> None:
        concurrently(*(lambda plan=plan: self.client(plan) for plan in plans))


def concurrently(*calls: Callable[[], object]) -> None:
    """Run each call in a thread of its own, all at once; the first failure (the test's own assertion, or the
    pool's) fails the example once all are over."""
    failures: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
        assert not thread.is_alive(), "a client never finished"
    if failures:
        raise failures[0]


def drain_faults(upstream: DotsEmulator) -> None:
    """Use up the faults no request took, with unauthenticated requests, which make no link."""
    url = f"http://127.0.0.1:{upstream.port}{PAYOUT_LINKS_PATH}"
    for _ in range(20):
        if upstream.inject() == 0:
            break
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url, json={"amount": 1}, timeout=0.5)
    assert upstream.inject() == 0, "faults left queued"
    assert upstream.wait_idle()


def counters(dynamodb: Any, table: str, caller: str, now: float) -> tuple[int, int]:
    """(cents in the caller's day counter, links in its hour counter) for the windows `now` is in."""
    totals = []
    for limit in (Limit.DAILY_AMOUNT, Limit.HOURLY_LINKS):
        counter = current_counters(caller, now)[limit]
        item = dynamodb.get_item(TableName=table, Key={"id": {"S": counter.id}}, ConsistentRead=True).get("Item")
        totals.append(int(item[counter.total_attr]["N"]) if item and counter.total_attr in item else 0)
    return totals[0], totals[1]


@pytest.fixture
def pool(aws_resources, upstream, tmp_path):
    env = {
        **os.environ,
        **function_env(upstream.base_url),
        "CALLER_DAILY_AMOUNT_LIMIT_CENTS": str(DAILY_AMOUNT_CENTS),
        "CALLER_HOURLY_LINK_LIMIT": str(HOURLY_LINKS),
        "PAYOUT_API_TIMEOUT_SECONDS": "1",
        "PAYOUT_API_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    }
    with (tmp_path / "containers.log").open("w") as log:
        containers = WorkerPool(
            CONTAINERS, "payout_links.app.lambda_handler", env, timeout_seconds=FUNCTION_TIMEOUT_SECONDS, log=log
        )
        yield containers
        containers.stop()


SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_a_callers_links_stay_within_its_limits_whatever_the_interleaving(
    pool, upstream, aws_clients, aws_resources, capsys
):
    dynamodb, table = aws_clients[0], aws_resources["table"]
    RUN.clear()
    ANSWERS.clear()
    started = time.monotonic()

    @SETTINGS
    @given(plans=plans)
    def limits_hold(plans: list[list[Create]]) -> None:
        clear_of_window_end(30)  # one UTC hour and day for the whole example
        drain_faults(upstream)
        upstream.reset()
        example = Example(pool, upstream)
        caller = f"user:{example.sub}"
        window = time.time()
        example.run(plans)
        drain_faults(upstream)
        # An example slowed past the end of its hour (a lock left to expire) counted in two windows: not this one.
        assume(int(time.time() // 3600) == int(window // 3600))
        RUN["examples"] += 1
        RUN["creates"] += len(example.intents)

        # 1. every answer a 201 or a problem that says where its key stands
        for intent in example.intents:
            for result in intent.answers:
                answer = str(result.status)
                if result.status != 201:
                    assert result.is_problem(), (result.status, result.body)
                    problem = result.json()
                    answer += " " + problem["type"].rsplit(":", 1)[-1]
                    assert problem.get("key_state") in ("bound", "released", "spent"), problem
                    if problem["type"] == LIMIT_EXCEEDED:
                        assert result.status == 429 and problem["key_state"] == "released", problem
                        assert problem["limit"] in ("daily-amount", "hourly-links"), problem
                        answer += f" ({problem['limit']})"
                ANSWERS[answer] += 1
        states = Counter(intent.state for intent in example.intents)
        event(f"intents: {dict(sorted(states.items()))}")
        RUN.update(states)

        # 2. the counters hold what created and kept intents reserved, and nothing of the released ones
        holding = [intent for intent in example.intents if intent.state in ("created", "kept")]
        day, hour = counters(dynamodb, table, caller, window)
        history = [(intent.amount, [r.status for r in intent.answers], intent.state) for intent in example.intents]
        assert (day, hour) == (sum(intent.amount for intent in holding), len(holding)), history
        assert day <= DAILY_AMOUNT_CENTS and hour <= HOURLY_LINKS

        # 3. what Dots made: within the limits, each link a created or kept intent's, each 201 one of them
        by_key = {intent.key: intent for intent in example.intents}
        links = {link["id"]: upstream.link(link["id"]) for link in upstream.links()}
        owners = {link_id: by_key[json.loads(link["metadata"])["intent"]] for link_id, link in links.items()}
        refused_after_made = {
            link_id
            for link_id, intent in owners.items()
            if intent.state == "released" and intent.final_type == UPSTREAM_REJECTED
        }
        RUN["refused after its link was made"] += len(refused_after_made)
        counted = {link_id: owners[link_id] for link_id in links if link_id not in refused_after_made}
        assert all(intent.state in ("created", "kept") for intent in counted.values()), history
        assert sum(int(links[link_id]["amount"]) for link_id in counted) <= DAILY_AMOUNT_CENTS, history
        assert len(counted) <= HOURLY_LINKS, history
        for intent in example.intents:
            if intent.state == "created":
                assert intent.final is not None and intent.final.json()["id"] in counted, history

    try:
        limits_hold()
    finally:
        with capsys.disabled():
            print(
                f"\nlimits hold: {RUN['examples']} examples, {RUN['creates']} creates"
                f" in {time.monotonic() - started:.1f} s; intents: created {RUN['created']}, kept {RUN['kept']},"
                f" released {RUN['released']} ({RUN['refused after its link was made']} refused after its link was"
                " made); answers: " + ", ".join(f"{answer} x{count}" for answer, count in ANSWERS.most_common())
            )
