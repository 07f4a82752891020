"""Exactly once, as a property: random sequences of creates, each maybe preceded by one upstream fault, never
leave two links for one intent, never hand a caller a link that does not match their request, and follow the
outcome rules of outcomes.py for every idempotency key.

The machine drives the real handler in-process (a Lambda container, sometimes restarted cold) against the real
moto server and the Dots emulator over HTTP. A few callers share a few keys (the same key strings for every
caller: intents are per caller) and send a few bodies that differ in amount, payee phone or delivery. Before a
create it may queue one fault, covering every way an exchange can end:

- the upstream certainly made nothing and says so (400, 422, 429, 401 twice): NOT_CREATED, the key is released;
- it made nothing but the proxy cannot know (500 or a dropped connection before the create): UNKNOWN;
- it made the link and the answer is lost (500, drop or an unreadable 2xx after the create, an answer slower
  than the attempt timeout) or wrong (a 2xx whose amount or payee differs from the request): UNKNOWN.

Retryable faults come once (the proxy's second attempt gets the link) or on both attempts (the create fails).

The emulator is the witness: after each step the links it holds are attributed to the step that made them (the
steps run one at a time, and the test waits until the emulator is idle, a slow answer's request included).

Invariants, with a link "for (caller, key)" being one the emulator made during a create for that intent:

1. The emulator holds at most one link for a (caller, key), ever, and none without an upstream key. By the rules a
   key is bound to one body from its first lock until its record is released, which happens only when nothing
   was created for certain; so a key whose create may have made a link is never taken by another body, and the
   same body always asks with the same upstream key. Every upstream key belongs to one (caller, key, body).
2. Every 201 for a (caller, key) carries the same link id, and it is that one link; a key whose create may have
   made a link never answers 201 to another body.
3. No 201 carries a link whose amount, payee phone or delivery method differs from its request.
4. Every other answer is a problem+json whose `status` is the HTTP status, and never a 500.
5. A 422 idempotency-key-reused is answered only to a body other than the one the key is bound to; a key
   answered 201 replays that link (Idempotent-Replayed) to the same body without calling the upstream.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from local_stack.dots_emulator import PAYOUT_LINKS_PATH, DotsEmulator
from tests.support import EMAIL, InProcessFunction, payout_body

pytestmark = pytest.mark.properties

ATTEMPT_TIMEOUT_SECONDS = 0.3
MAX_ATTEMPTS = 2
SLOW_SECONDS = 0.4  # past the attempt timeout
CALLERS = ("alice", "bob")
KEYS_PER_CALLER = 3
KEY_REUSED = "urn:payout-link-proxy:problem:idempotency-key-reused"


@dataclass(frozen=True, eq=False)
class Body:
    name: str
    json: dict[str, Any]

    def __repr__(self) -> str:
        return self.name

    @property
    def phone(self) -> str:
        return self.json["payee"]["phone_number"]

    @property
    def method(self) -> str:
        return self.json["delivery"]["method"]


BODIES = (
    Body("base", payout_body()),
    Body("amount", payout_body(amount=4100)),
    Body("phone", payout_body(payee={"country_code": "1", "phone_number": "5555550199", "email": EMAIL})),
    Body("delivery", payout_body(delivery={"method": "link"})),
)


@dataclass(frozen=True, eq=False)
class Fault:
    name: str
    spec: dict[str, Any]
    # The answer by which the proxy says "nothing was created, the key is released" for this fault.
    refusal: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return self.name


OTHER_PAYEE = {"country_code": "1", "phone_number": "5555550000", "first_name": "Eve", "email": EMAIL}


def _retryable(name: str, spec: dict[str, Any]) -> tuple[Fault, Fault]:
    """A fault the proxy retries: once (its second attempt succeeds), or on every attempt (the create fails)."""
    return Fault(name, spec), Fault(f"{name} x{MAX_ATTEMPTS}", {**spec, "count": MAX_ATTEMPTS})


_RETRYABLE = (
    _retryable("500 before create", {"status": 500}),
    _retryable("500 after create", {"status": 500, "after_create": True}),
    _retryable("drop before create", {"drop": True}),
    _retryable("drop after create", {"drop": True, "after_create": True}),
    _retryable("slow before create", {"delay_seconds": SLOW_SECONDS}),
    _retryable("slow after create", {"delay_seconds": SLOW_SECONDS, "after_create": True}),
)
# The faults by what they make of a create, so that each class is drawn as often as the others.
RECOVERED = (*(once for once, _ in _RETRYABLE), Fault("401 once", {"status": 401}))  # the retry gets the link
UNKNOWN = (  # a link may exist (for the "before create" faults it does not, but the proxy cannot know)
    *(every for _, every in _RETRYABLE),
    Fault("unreadable 201 after create", {"status": 201, "raw_body": "<html>oops</html>", "after_create": True}),
    Fault("201 with another amount", {"link_overrides": {"amount": 1.0}}),
    Fault("201 with another payee", {"link_overrides": {"payee": OTHER_PAYEE}}),
)
REFUSED = (  # nothing was made, and the upstream says so
    Fault("429", {"status": 429, "retry_after": "7"}, refusal=(429, "upstream-rate-limited")),
    Fault("400", {"status": 400}, refusal=(422, "upstream-rejected")),
    Fault("422", {"status": 422}, refusal=(422, "upstream-rejected")),
    Fault("401 x2", {"status": 401, "count": 2}, refusal=(502, "upstream-failed")),
)

# Rules draw names, so that a failing sequence reads as one line per step.
BODY_NAMED = {body.name: body for body in BODIES}
FAULT_NAMED = {fault.name: fault for fault in (*RECOVERED, *UNKNOWN, *REFUSED)}
bodies = st.sampled_from(list(BODY_NAMED))
faults = st.one_of(st.none(), *(st.sampled_from([f.name for f in kind]) for kind in (RECOVERED, UNKNOWN, REFUSED)))
cold_starts = st.sampled_from([False, False, False, False, False, True])  # now and then a new container

# What the runs did, printed at the end of the test: the number must be reportable.
RUN: Counter[str] = Counter()
ANSWERS: Counter[str] = Counter()


@dataclass
class Intent:
    """What the test knows about one (caller, key), by the rules and by the emulator's witness."""

    bound: Body | None = None  # the body the key's record holds; None: no record (new, or released)
    completed: str | None = None  # the link id, once answered 201
    links: set[str] = field(default_factory=set)  # links the emulator made for this intent
    answered: set[str] = field(default_factory=set)  # link ids answered 201 for this intent
    may_have_made: Body | None = None  # the body of the first create that may have made a link
    history: list[str] = field(default_factory=list)


def drain_faults(upstream: DotsEmulator) -> None:
    """Use up the faults a step left queued (its request never reached the upstream, or stopped early) with
    unauthenticated requests, which the emulator refuses without making a link."""
    url = f"http://127.0.0.1:{upstream.port}{PAYOUT_LINKS_PATH}"
    for _ in range(20):
        if upstream.inject() == 0:  # queues nothing, returns the queue's length
            break
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url, json={"amount": 1}, timeout=0.05)
    assert upstream.inject() == 0, "faults left queued"
    assert upstream.wait_idle()


class ExactlyOnce(RuleBasedStateMachine):
    function: InProcessFunction
    upstream: DotsEmulator

    def __init__(self) -> None:
        super().__init__()
        # The DynamoDB table persists across examples: fresh keys for each. The emulator starts empty.
        assert self.upstream.wait_idle()
        self.upstream.reset()
        self.prefix = uuid.uuid4().hex[:12]
        self.intents: dict[tuple[str, str], Intent] = {}
        self.owner_of_upstream_key: dict[str, tuple[str, str, str]] = {}
        self.upstream_key_of: dict[tuple[str, str, str], str] = {}
        self.last: tuple[str, int, Body] | None = None
        RUN["sequences"] += 1

    # -- rules ------------------------------------------------------------------------------------------------

    @rule(
        caller=st.sampled_from(CALLERS),
        key=st.integers(0, KEYS_PER_CALLER - 1),
        body=bodies,
        fault=faults,
        cold=cold_starts,
    )
    def create(self, caller: str, key: int, body: str, fault: str | None, cold: bool) -> None:
        self._step(caller, key, BODY_NAMED[body], fault, cold)

    @precondition(lambda self: self.last is not None)
    @rule(fault=faults, cold=cold_starts)
    def retry(self, fault: str | None, cold: bool) -> None:
        """The caller retries its last request, as a client that got an error (or no answer) should."""
        assert self.last is not None
        self._step(*self.last, fault, cold)

    @precondition(lambda self: self.last is not None)
    @rule(body=bodies, fault=faults, cold=cold_starts)
    def edit(self, body: str, fault: str | None, cold: bool) -> None:
        """The caller sends another body with its last key, as a form that keeps its key when it is edited does."""
        assert self.last is not None
        caller, key, _ = self.last
        self._step(caller, key, BODY_NAMED[body], fault, cold)

    # -- one step ---------------------------------------------------------------------------------------------

    def _step(self, caller: str, key_index: int, body: Body, fault_name: str | None, cold: bool) -> None:
        fault = None if fault_name is None else FAULT_NAMED[fault_name]
        key = f"{self.prefix}-k{key_index}"
        intent = self.intents.setdefault((caller, key), Intent())
        self.last = (caller, key_index, body)
        if cold:
            self.function.reset_container()
        before = self.upstream.stats()
        if fault is not None:
            self.upstream.inject(fault.spec)
        result = self.function.create(body.json, key=key, sub=caller)
        assert self.upstream.wait_idle(), "a slow request outlived the wait"
        after = self.upstream.stats()
        drain_faults(self.upstream)
        RUN["steps"] += 1

        problem = result.json() if result.status != 201 else None
        slug = problem["type"].rsplit(":", 1)[-1] if problem and isinstance(problem.get("type"), str) else None
        answer = f"{result.status} {slug or ''}".strip()
        intent.history.append(f"{body!r} [{fault!r}] -> {answer}")
        event(f"{fault!r} -> {answer}")
        ANSWERS[answer] += 1
        where = f"{caller}/{key_index}: " + " | ".join(intent.history)
        reached = after["requests"] - before["requests"]

        # 4. every other answer is a problem+json with its own status, and never a 500
        assert result.status != 500, where
        if result.status != 201:
            assert result.is_problem(), (where, result.headers, result.body)

        # 1. the witness: what the emulator made during this step is this intent's, for this body, and one link
        made = {name: link for name, link in after["links"].items() if name not in before["links"]}
        assert not [k for k in made if k.startswith("<none>")], f"a link made without an upstream key: {where}"
        if reached:
            sent = after["last_request"]["body"]["idempotency_key"]
            owner = (caller, key, body.name)
            assert self.owner_of_upstream_key.setdefault(sent, owner) == owner, (
                f"one upstream key for two requests: {self.owner_of_upstream_key[sent]} and {owner}"
            )
            assert self.upstream_key_of.setdefault(owner, sent) == sent, f"a new upstream key for a retry: {where}"
            assert set(made) <= {sent}, f"links made under another upstream key: {where}"
        else:
            assert not made, f"links made without a request: {where}"
        intent.links.update(made.values())
        assert len(intent.links) <= 1, f"{len(intent.links)} links for one (caller, key): {where}"

        if result.status == 201:
            link = result.json()
            # 3. the link is the one this request asked for
            assert link["amount"] == body.json["amount"], f"201 with amount {link['amount']}: {where}"
            assert (link["payee"] or {}).get("phone_number") == body.phone, f"201 with another payee: {where}"
            assert (link["delivery"] or {}).get("method") == body.method, f"201 with another delivery: {where}"
            # 2. one link per intent, the one the emulator made for it, and only for the body that may have made it
            intent.answered.add(link["id"])
            assert len(intent.answered) == 1, f"two links answered 201 for one (caller, key): {where}"
            assert link["id"] in intent.links, f"a 201 with a link not made for this (caller, key): {where}"
            assert intent.may_have_made in (None, body), (
                f"201 to {body!r} on a key whose create for {intent.may_have_made!r} may have made a link: {where}"
            )

        # 5. the outcome rules, per key
        reused = result.status == 422 and problem is not None and problem["type"] == KEY_REUSED
        if intent.completed is not None or (intent.bound is not None and intent.bound is not body):
            assert intent.bound is not None
            if intent.bound is body:
                assert result.status == 201 and result.json()["id"] == intent.completed, f"no replay: {where}"
                assert result.headers.get("idempotent-replayed") == "true", where
            else:
                assert reused, f"{answer} to {body!r}, the key is bound to {intent.bound!r}: {where}"
            assert reached == 0, f"the upstream was called for a settled key: {where}"
            return
        assert not reused, f"422 key reused, but the key is {intent.bound or 'free'!r}: {where}"
        assert result.status != 409, f"409 with no request in flight: {where}"
        assert reached >= 1, f"a create that never reached the upstream: {where}"
        if result.status == 201:
            assert "idempotent-replayed" not in result.headers, where
            intent.bound, intent.completed = body, result.json()["id"]
        elif fault is not None and fault.refusal == (result.status, slug) and intent.may_have_made is None:
            intent.bound = None  # released: nothing was created, for certain, by any create for this key
        else:
            intent.bound = body  # UNKNOWN: a link may exist, the key stays bound to this body
        if intent.bound is not None and intent.may_have_made is None:
            intent.may_have_made = body

    @invariant()
    def at_most_one_link_per_intent(self) -> None:
        links = self.upstream.stats()["links"]
        owners = Counter(self.owner_of_upstream_key[upstream_key][:2] for upstream_key in links)
        assert all(count == 1 for count in owners.values()), owners
        assert len(links) == sum(len(intent.links) for intent in self.intents.values())


SETTINGS = settings(
    max_examples=35,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_one_link_per_intent_whatever_the_upstream_does(function, upstream, capsys):
    function.set_env(PAYOUT_API_TIMEOUT_SECONDS=str(ATTEMPT_TIMEOUT_SECONDS), PAYOUT_API_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    machine = type("Machine", (ExactlyOnce,), {"function": function, "upstream": upstream})
    RUN.clear()
    ANSWERS.clear()
    started = time.monotonic()
    try:
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        with capsys.disabled():
            print(
                f"\nexactly once: {RUN['sequences']} sequences, {RUN['steps']} steps"
                f" in {time.monotonic() - started:.1f} s; answers: "
                + ", ".join(f"{answer} x{count}" for answer, count in ANSWERS.most_common())
            )
