"""Exactly once, as a property: random sequences of creates (each maybe preceded by one upstream fault), callers that
give up on an intent, and settler runs never leave two live links for one intent, never hand a caller (or record) a
link that does not match its request, follow the outcome rules of outcomes.py and store.py for every idempotency
key, and, once everything due has been settled, leave every link Dots holds either recorded with its owner or
canceled by the proxy.

The machine drives the real handler and the real settler in-process (a Lambda container, sometimes restarted cold)
against the real moto server and the Dots emulator over HTTP. A few callers share a few keys (the same key strings
for every caller: intents are per caller) and send a few bodies that differ in amount, payee phone or delivery.
The test has an idempotency table of its own, and each example starts with an empty settle queue, so that a
settler run sees that example's intents alone. The steps:

- `send`: a create, a retry (the last request again, as a client that got an error should) or an edit (another
  body with the last key, as a form that keeps its key when edited does), maybe preceded by one fault;
- `abandon`: the caller whose last create ended unknown never sends anything for that key again (a closed tab):
  only the settler can still settle it;
- `settle`: one settler run once everything queued is due, maybe with one fault for its first resend (the settler
  runs one resend at a time here, SETTLE_CONCURRENCY=1, so that the fault meets the first intent it resends).

Time: store.py reads `time.time()` for every lock, record expiry and due time, and nothing else decides when an
intent is due. The machine gives the store a clock of its own that only the steps move: a second per request (so
that intents dropped unknown by different requests are due at different seconds, and the settler's order, oldest
due first, is known), and a settle step moves it on to the time the last queued intent is due (SETTLE_AFTER_SECONDS
after its caller's lock was dropped, or its backoff), so that every queued intent is due. Which intents a run
resends, and in what order, is a function of the steps drawn, never of how busy the machine is, and no step waits.
Steps run one at a time, so no request's lock is ever live when the clock moves. SETTLE_AFTER_SECONDS is 1, as in
every test; the clock moves far less than the records' 24 hours in an example, so no record expires.

The faults cover every way an exchange can end:

- recovered: retryable once, the proxy's second attempt gets the link (500, drop or slow before or after the
  create; a 401, after which the proxy reads its credentials again);
- unknown: the same on both attempts, or an unreadable 2xx after the create: a link may exist, the key stays bound;
- mismatched: a 2xx whose amount or payee differs from the request: the proxy cancels that link at Dots and spends
  the key (502 upstream-mismatch, key_state spent); the canceled link counts as canceled, never as live;
- refused: a 400 or 422 (Dots judged the request) releases the key, even after an unknown attempt, because Dots
  returns the existing link for a key it knows: a refusal proves there is none. The emulator refuses whatever it
  is told to, so a 400 or 422 is only drawn for an intent that has no link at the emulator yet (for a settle step:
  when the intent due first, which its first resend is for, has none, and no other is due at the same second);
  drawn otherwise, the step runs without a fault. A 429 or two 401s (nothing
  made by this request) release the key only for a fresh lock, not after taking over an unknown intent.

The emulator is the witness: after each step the links it holds are attributed to the intent whose upstream key
made them (the steps run one at a time, and the test waits until the emulator is idle, a slow answer's request
included). Where the settler's choice matters (which intent it resent first), the machine reads the intent's record
and checks what it says against the emulator and the report.

Invariants, with a link "for (caller, key)" being one the emulator made under that intent's upstream key:

1. The emulator holds at most one link for a (caller, key), ever, and none without an upstream key; every upstream
   key belongs to one (caller, key, body), and the settler resends under the same one as the caller.
2. Every 201 for a (caller, key) carries the same link id, the one the emulator made for it; a key whose create may
   have made a link never answers 201 to another body.
3. No 201 (nor a link the settler records) carries a link whose amount, payee phone or delivery method differs from
   its request.
4. Every other answer is a problem+json whose `status` is the HTTP status, never a 500, and says where the key
   stands (`key_state`): `released` only when the emulator holds no link for the intent, `spent` only for a
   mismatch whose link the emulator shows canceled (and to any body once spent), `bound` otherwise (409 and 422
   idempotency-key-reused too).
5. A 422 idempotency-key-reused is answered only to a body other than the one the key is bound to; a completed key
   replays its link (Idempotent-Replayed) and a spent key answers its problem again, to the same body, without
   calling the upstream.
6. An intent left unknown by its caller is due SETTLE_AFTER_SECONDS after its lock was dropped. A settler run
   finds every due intent and nothing else (its `due` is the number of unknown intents), resends the oldest due
   first, backs an intent still unknown off by SETTLE_AFTER_SECONDS * 2^(attempts + 1) and counts the attempt, and
   its report counts what its resends did to the records.
7. At quiescence (settled until nothing is due): every link Dots holds is recorded with its owner (GET by the
   owner is 200, and replaying the intent answers that link, matching its request) or was canceled by the proxy
   (its key is spent); no intent is still unknown.

Run time: 28 examples of up to 40 steps (1,120 steps; it was 35 examples of 20, 700 steps, in about 330 s), in 125
to 175 s on two busy cores: a settle step costs less than a request. Hypothesis' swarm testing leaves some rules out
of some examples, so a run has about a thousand requests, a few dozen abandoned intents and 30 to 90 settler runs;
the summary line it prints says how many. A resend refused by Dots (400/422) is drawn only when the intent due first
has no link, so a run meets it rarely; tests/integration/test_settler.py tests it every time.
"""

from __future__ import annotations

import contextlib
import json
import sys
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
from payout_links import store
from payout_links.intent import record_id
from payout_links.problems import PROBLEM_TYPE_PREFIX
from payout_links.service import SETTLE_BACKOFF_CAP_SECONDS
from tests.support import EMAIL, InProcessFunction, payout_body, token

pytestmark = pytest.mark.properties

ATTEMPT_TIMEOUT_SECONDS = 0.3
MAX_ATTEMPTS = 2
SLOW_SECONDS = 0.4  # past the attempt timeout
CALLERS = ("alice", "bob")
KEYS_PER_CALLER = 3
SLOTS = len(CALLERS) * KEYS_PER_CALLER
KEY_REUSED = PROBLEM_TYPE_PREFIX + "idempotency-key-reused"


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

    def matches(self, link: dict[str, Any]) -> list[str]:
        """The fields of a (normalized) link that differ from this request."""
        wrong = [] if link["amount"] == self.json["amount"] else ["amount"]
        if (link["payee"] or {}).get("phone_number") != self.phone:
            wrong.append("payee")
        if (link["delivery"] or {}).get("method") != self.method:
            wrong.append("delivery")
        return wrong


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
    kind: str  # recovered, unknown, mismatched, judged (400/422), not-created (429, 401 twice)
    # What the proxy answers when the fault decides the create (for judged and not-created faults).
    answer: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return self.name


OTHER_PAYEE = {"country_code": "1", "phone_number": "5555550000", "first_name": "Eve", "email": EMAIL}


def _retryable(name: str, spec: dict[str, Any]) -> tuple[Fault, Fault]:
    """A fault the proxy retries: once (its second attempt succeeds), or on every attempt (the create fails)."""
    return Fault(name, spec, "recovered"), Fault(f"{name} x{MAX_ATTEMPTS}", {**spec, "count": MAX_ATTEMPTS}, "unknown")


_RETRYABLE = (
    _retryable("500 before create", {"status": 500}),
    _retryable("500 after create", {"status": 500, "after_create": True}),
    _retryable("drop before create", {"drop": True}),
    _retryable("drop after create", {"drop": True, "after_create": True}),
    _retryable("slow before create", {"delay_seconds": SLOW_SECONDS}),
    _retryable("slow after create", {"delay_seconds": SLOW_SECONDS, "after_create": True}),
)
# The faults by what they make of a create, so that each class is drawn as often as the others.
RECOVERED = (*(once for once, _ in _RETRYABLE), Fault("401 once", {"status": 401}, "recovered"))
UNKNOWN = (  # a link may exist (for the "before create" faults it does not, but the proxy cannot know)
    *(every for _, every in _RETRYABLE),
    Fault(
        "unreadable 201 after create", {"status": 201, "raw_body": "<html>oops</html>", "after_create": True}, "unknown"
    ),
)
MISMATCHED = (
    Fault("201 with another amount", {"link_overrides": {"amount": 1.0}}, "mismatched"),
    Fault("201 with another payee", {"link_overrides": {"payee": OTHER_PAYEE}}, "mismatched"),
)
JUDGED = (
    Fault("400", {"status": 400}, "judged", (422, "upstream-rejected")),
    Fault("422", {"status": 422}, "judged", (422, "upstream-rejected")),
)
NOT_CREATED = (
    Fault("429", {"status": 429, "retry_after": "7"}, "not-created", (429, "upstream-rate-limited")),
    Fault("401 x2", {"status": 401, "count": 2}, "not-created", (502, "upstream-failed")),
)

# Rules draw names, so that a failing sequence reads as one line per step.
BODY_NAMED = {body.name: body for body in BODIES}
FAULT_NAMED = {fault.name: fault for fault in (*RECOVERED, *UNKNOWN, *MISMATCHED, *JUDGED, *NOT_CREATED)}
bodies = st.sampled_from(list(BODY_NAMED))


def _faults(*kinds: tuple[Fault, ...]) -> st.SearchStrategy[str | None]:
    """No fault, or one of each class as often as the others."""
    return st.one_of(st.none(), *(st.sampled_from([fault.name for fault in kind]) for kind in kinds))


# A create's: unknown outcomes twice as often as the other classes, since they are what the settler and abandoned
# intents are about. A settler run's: a refusal the upstream judged as often as the others, since it is drawn only
# when the intent due first has no link.
faults = _faults(RECOVERED, UNKNOWN, UNKNOWN, MISMATCHED, (*JUDGED, *NOT_CREATED))
settle_faults = _faults(RECOVERED, UNKNOWN, MISMATCHED, JUDGED, NOT_CREATED)
cold_starts = st.sampled_from([False, False, False, False, False, True])  # now and then a new container

# What the runs did, printed at the end of the test: the number must be reportable.
RUN: Counter[str] = Counter()
ANSWERS: Counter[str] = Counter()

FREE, UNSETTLED, COMPLETED, SPENT = "free", "unknown", "completed", "spent"


@dataclass
class Intent:
    """What the test knows about one (caller, key), by the rules and by the emulator's witness."""

    caller: str
    key: str
    state: str = FREE  # FREE: no record (new, or released); UNSETTLED: bound, a link may exist
    bound: Body | None = None  # the body the key's record holds (UNSETTLED, COMPLETED, SPENT)
    completed: str | None = None  # the link id, once the record is completed (by a 201 or by the settler)
    spent_type: str | None = None  # the problem a spent key answers again
    links: set[str] = field(default_factory=set)  # links the emulator made for this intent
    answered: set[str] = field(default_factory=set)  # link ids answered 201 for this intent
    may_have_made: Body | None = None  # the body of the first create that may have made a link
    abandoned: bool = False
    history: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.caller}/{self.key[-2:]}: " + " | ".join(self.history)


class StoreClock:
    """The idempotency store's clock: it stands still but for the steps, each of which moves it on. store.py reads
    the time only through `time.time()` (and sleeps through `time.sleep`, briefly, between two attempts of a
    transaction)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    def until(self, moment: float) -> None:
        """On to `moment`, unless it is past already: the clock never goes back."""
        self.now = max(self.now, moment)

    def tick(self) -> None:
        """A second between two requests: intents dropped unknown by different steps are due at different times."""
        self.now += 1


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


def purge_settle_queue(dynamodb: Any, table: str) -> None:
    """Delete the intents an earlier example left queued (it failed before settling them), so that the settler's
    queue holds this example's intents alone; its completed and spent records stay, under keys no later example
    uses."""
    for partition in (store.DUE, store.STRANDED):
        queued = dynamodb.query(
            TableName=table,
            IndexName=store.SETTLE_INDEX,
            KeyConditionExpression="settle_queue = :partition",
            ExpressionAttributeValues={":partition": {"S": partition}},
        )["Items"]
        for item in queued:
            dynamodb.delete_item(TableName=table, Key={"id": item["id"]})


class ExactlyOnce(RuleBasedStateMachine):
    function: InProcessFunction
    upstream: DotsEmulator
    dynamodb: Any
    table: str
    clock: StoreClock

    def __init__(self) -> None:
        super().__init__()
        assert self.upstream.wait_idle()
        self.upstream.reset()
        self.prefix = uuid.uuid4().hex[:12]
        purge_settle_queue(self.dynamodb, self.table)
        self.intents: dict[tuple[str, str], Intent] = {}
        self.owner_of_upstream_key: dict[str, tuple[str, str, str]] = {}
        self.upstream_key_of: dict[tuple[str, str, str], str] = {}
        self.last: tuple[str, str, Body] | None = None
        RUN["sequences"] += 1

    # -- rules ------------------------------------------------------------------------------------------------

    def _intent(self, caller: str, key: str) -> Intent:
        return self.intents.setdefault((caller, key), Intent(caller, key))

    def _open_slots(self) -> list[tuple[str, str]]:
        keys = [(caller, f"{self.prefix}-k{index}") for caller in CALLERS for index in range(KEYS_PER_CALLER)]
        return [slot for slot in keys if not self._intent(*slot).abandoned]

    @precondition(lambda self: self._open_slots())
    @rule(
        kind=st.sampled_from(["create", "retry", "edit"]),
        slot=st.integers(0, SLOTS - 1),
        body=bodies,
        fault=faults,
        cold=cold_starts,
    )
    def send(self, kind: str, slot: int, body: str, fault: str | None, cold: bool) -> None:
        """One request: `create`, for one of the (caller, key)s nobody has abandoned (the drawn `slot`, or the next
        open one) with `body`; `retry`, the last request again, as a client that got an error (or no answer)
        should; `edit`, `body` with the last key, as a form that keeps its key when it is edited does. Without a
        last request (none yet, or it was abandoned) a retry or an edit is a create. One rule rather than three, so
        that a settle or an abandon, whenever one is possible, is drawn as often as a request."""
        if kind == "create" or self.last is None:
            open_slots = self._open_slots()
            caller, key = open_slots[slot % len(open_slots)]
            self._step(caller, key, BODY_NAMED[body], fault, cold)
        elif kind == "retry":
            self._step(*self.last, fault, cold)
        else:
            caller, key, _ = self.last
            self._step(caller, key, BODY_NAMED[body], fault, cold)

    @precondition(
        lambda self: self.last is not None
        and self._intent(*self.last[:2]).state == UNSETTLED
        and len(self._open_slots()) > 1
    )
    @rule()
    def abandon(self) -> None:
        """The caller whose last create ended unknown never sends anything for that key again (its tab closed): only
        the settler can settle it. One (caller, key) always stays open."""
        assert self.last is not None
        caller, key, _ = self.last
        intent = self._intent(caller, key)
        intent.abandoned = True
        intent.history.append("abandoned")
        self.last = None
        RUN["abandoned"] += 1

    @precondition(lambda self: any(intent.state == UNSETTLED for intent in self.intents.values()))
    @rule(fault=settle_faults)
    def settle(self, fault: str | None) -> None:
        """One settler run, once every queued intent is due."""
        self._settle(None if fault is None else FAULT_NAMED[fault])

    # -- one create -------------------------------------------------------------------------------------------

    def _step(self, caller: str, key: str, body: Body, fault_name: str | None, cold: bool) -> None:
        fault = None if fault_name is None else FAULT_NAMED[fault_name]
        intent = self._intent(caller, key)
        if fault is not None and fault.kind == "judged" and intent.links:
            fault = None  # Dots never refuses a key it knows: it answers the link it made
            event("a 400/422 drawn for an intent with a link: no fault")
        self.last = (caller, key, body)
        self.clock.tick()
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
        slug = problem["type"].removeprefix(PROBLEM_TYPE_PREFIX) if problem else None
        answer = f"{result.status} {slug or ''}".strip()
        intent.history.append(f"{body!r} [{fault!r}] -> {answer}" + (f" {problem.get('key_state')}" if problem else ""))
        event(f"{fault!r} -> {answer}")
        ANSWERS[answer] += 1
        where = intent.where()
        reached = after["requests"] - before["requests"]

        # 4. every other answer is a problem+json with its own status, and never a 500
        assert result.status != 500, where
        if problem is not None:
            assert result.is_problem(), (where, result.headers, result.body)

        # 1. the witness: what the emulator made during this step is this intent's, for this body, and one link
        made = {name: link for name, link in after["links"].items() if name not in before["links"]}
        assert not [k for k in made if k.startswith("<none>")], f"a link made without an upstream key: {where}"
        if reached:
            sent = self._sent_key(after["last_request"])
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
            assert not body.matches(link), f"201 with another {body.matches(link)}: {where}"
            # 2. one link per intent, the one the emulator made for it, and only for the body that may have made it
            intent.answered.add(link["id"])
            assert len(intent.answered) == 1, f"two links answered 201 for one (caller, key): {where}"
            assert link["id"] in intent.links, f"a 201 with a link not made for this (caller, key): {where}"
            assert intent.may_have_made in (None, body), (
                f"201 to {body!r} on a key whose create for {intent.may_have_made!r} may have made a link: {where}"
            )

        # 5. keys that were settled, or bound to another body, never reach the upstream
        reused = result.status == 422 and slug == "idempotency-key-reused"
        settled_before = intent.state in (COMPLETED, SPENT)
        if settled_before or (intent.state == UNSETTLED and intent.bound is not body):
            assert reached == 0, f"the upstream was called for a settled key: {where}"
            if intent.bound is not body:
                assert reused and problem is not None, (
                    f"{answer} to {body!r}, the key is bound to {intent.bound!r}: {where}"
                )
                assert problem["key_state"] == ("spent" if intent.state == SPENT else "bound"), where
            elif intent.state == COMPLETED:
                assert result.status == 201 and result.json()["id"] == intent.completed, f"no replay: {where}"
                assert result.headers.get("idempotent-replayed") == "true", where
            else:
                assert problem is not None and problem["type"] == intent.spent_type, f"spent, yet {answer}: {where}"
                assert problem["key_state"] == "spent", where
            return
        assert not reused, f"422 key reused, but the key is {intent.bound or 'free'!r}: {where}"
        assert result.status != 409, f"409 with no request in flight: {where}"
        assert reached >= 1, f"a create that never reached the upstream: {where}"
        inherited = intent.state == UNSETTLED  # the same body takes over its unknown intent
        if result.status == 201:
            assert "idempotent-replayed" not in result.headers, where
            intent.state, intent.bound, intent.completed = COMPLETED, body, result.json()["id"]
            intent.may_have_made = intent.may_have_made or body
            return
        assert problem is not None
        key_state = problem.get("key_state")
        if fault is not None and fault.answer == (result.status, slug):
            # the fault decided the create: the rules say what it does to the key
            expected = "released" if fault.kind == "judged" or not inherited else "bound"
            assert key_state == expected, f"{key_state} after {fault!r} (taken over: {inherited}): {where}"
        if fault is not None and fault.kind == "mismatched" and slug == "upstream-mismatch":
            assert key_state == "spent", where
        if key_state == "released":
            # 4. released only when nothing exists under the key
            assert not intent.links, f"a key released while Dots holds its link: {where}"
            intent.state, intent.bound, intent.may_have_made = FREE, None, None
        elif key_state == "spent":
            assert fault is not None and fault.kind == "mismatched", f"spent without a mismatch: {where}"
            assert slug == "upstream-mismatch", where
            (link_id,) = intent.links
            assert self.upstream.link(link_id)["status"] == "canceled", f"a mismatched link left live: {where}"
            intent.state, intent.bound, intent.spent_type = SPENT, body, problem["type"]
        else:
            assert key_state == "bound", f"key_state {key_state!r}: {where}"
            intent.state, intent.bound = UNSETTLED, body
            intent.may_have_made = intent.may_have_made or body
            # queued for the settler SETTLE_AFTER_SECONDS after its lock was dropped
            assert self._queue_place(intent)[0] == int(self.clock.now + 1), where

    def _sent_key(self, last: dict[str, Any]) -> str:
        """The upstream key of the step's create: the last request's, or, when the proxy then canceled the link the
        create answered (a mismatch), the key that link was made under."""
        if last["method"] == "DELETE":
            link_id = last["path"].rsplit("/", 1)[-1]
            (key,) = [link["idempotency_key"] for link in self.upstream.links() if link["id"] == link_id]
            return key
        return last["body"]["idempotency_key"]

    # -- one settler run --------------------------------------------------------------------------------------

    def _settle(self, fault: Fault | None) -> dict[str, Any]:
        unsettled = [intent for intent in self.intents.values() if intent.state == UNSETTLED]
        # The queue as the records have it before the run: the settler resends the oldest due first, one at a time,
        # so the fault meets the intent due first (when no other is due at the same second).
        queued = {id(intent): self._queue_place(intent) for intent in unsettled}
        first_due = min((due_at for due_at, _ in queued.values()), default=None)
        firsts = [intent for intent in unsettled if queued[id(intent)][0] == first_due]
        if fault is not None and fault.kind == "judged" and (len(firsts) != 1 or firsts[0].links):
            fault = None  # Dots never refuses a key it knows, and which intent comes first is not known
        self.clock.until(max((due_at for due_at, _ in queued.values()), default=0))  # every queued intent is due
        now = self.clock.now
        before = self.upstream.stats()
        if fault is not None:
            self.upstream.inject(fault.spec)
        report = self.function.settle()
        assert self.upstream.wait_idle(), "a slow request outlived the wait"
        after = self.upstream.stats()
        drain_faults(self.upstream)
        RUN["settle runs"] += 1
        summary = {name: report[name] for name in ("due", "resent", "settled", "released", "spent", "unknown")}
        event(f"settle [{fault!r}] -> " + ", ".join(f"{name} {count}" for name, count in summary.items() if count))

        # 6. every due intent, and nothing else
        where = f"settle [{fault!r}]: {report} | " + " || ".join(intent.where() for intent in unsettled)
        assert report["due"] == len(unsettled), where
        assert report["resent"] + report["skipped"] == report["due"], where
        assert (after["requests"] - before["requests"] == 0) == (report["resent"] == 0), where

        # 1. the witness: links the run made are unsettled intents', under the upstream keys their callers used
        made = {name: link for name, link in after["links"].items() if name not in before["links"]}
        for upstream_key, link_id in made.items():
            owner = self.owner_of_upstream_key.get(upstream_key)
            assert owner is not None, f"the settler made a link under an upstream key no caller sent: {where}"
            intent = self._intent(*owner[:2])
            assert intent.state == UNSETTLED and intent.bound is BODY_NAMED[owner[2]], where
            intent.links.add(link_id)
            assert len(intent.links) <= 1, f"{len(intent.links)} links for one (caller, key): {where}"

        # What each resend did, as the intent's record says; checked against the emulator and the report.
        moved: Counter[str] = Counter()
        resent_at: list[int] = []
        skipped_at: list[int] = []
        for intent in unsettled:
            state, record = self._record(intent)
            due_at, attempts = queued[id(intent)]
            if state == UNSETTLED:
                assert record is not None
                if self._queue_place(intent) == (due_at, attempts):
                    skipped_at.append(due_at)
                    continue  # not resent: the run was halted before it
                # unknown again: backed off by SETTLE_AFTER_SECONDS * 2^(attempts + 1), the attempt counted
                backoff = min(SETTLE_BACKOFF_CAP_SECONDS, 2 ** (attempts + 1))
                assert self._queue_place(intent) == (int(now + backoff), attempts + 1), (intent.where(), record)
                moved["unknown"] += 1
            resent_at.append(due_at)
            intent.history.append(f"settle [{fault!r}] -> {state}")
            where = intent.where()
            if state in (FREE, SPENT):
                assert first_due == due_at and len(firsts) == 1, f"the fault met another intent first: {where}"
            if state == COMPLETED:
                link = json.loads(record["data"]["S"])
                assert intent.bound is not None and not intent.bound.matches(link), f"recorded a mismatch: {where}"
                assert intent.links == {link["id"]}, f"recorded a link not made for the intent: {where}"
                assert intent.may_have_made in (None, intent.bound), where
                intent.state, intent.completed = COMPLETED, link["id"]
                moved["settled"] += 1
            elif state == FREE:
                assert not intent.links, f"a key released while Dots holds its link: {where}"
                assert fault is not None and fault.kind == "judged", f"released without a refusal: {where}"
                intent.state, intent.bound, intent.may_have_made = FREE, None, None
                moved["released"] += 1
            elif state == SPENT:
                assert fault is not None and fault.kind == "mismatched", f"spent without a mismatch: {where}"
                (link_id,) = intent.links
                assert self.upstream.link(link_id)["status"] == "canceled", f"a mismatched link left live: {where}"
                intent.state = SPENT
                intent.spent_type = json.loads(record["problem"]["S"])["type"]
                moved["spent"] += 1
        RUN.update({f"settler {name}": count for name, count in moved.items()})
        # 6. the report counts what the resends did, and the oldest due went first
        assert [report[name] for name in ("settled", "released", "spent", "unknown")] == [
            moved["settled"],
            moved["released"],
            moved["spent"],
            moved["unknown"],
        ], where
        assert report["resent"] == len(resent_at), where
        if resent_at and skipped_at:
            assert max(resent_at) <= min(skipped_at), f"not the oldest due first: {where}"
        return report

    def _queue_place(self, intent: Intent) -> tuple[int, int]:
        """When the intent's record says it is due, and how many resends of the settler it has had."""
        _, record = self._record(intent)
        assert record is not None and record.get("settle_queue", {}).get("S") == store.DUE, (intent.where(), record)
        return int(record["settle_at"]["N"]), int(record.get("settle_attempts", {}).get("N", "0"))

    def _record(self, intent: Intent) -> tuple[str, dict[str, Any] | None]:
        """The intent's state as its record has it."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"id": {"S": record_id(f"user:{intent.caller}", intent.key)}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return FREE, None
        status = item["status"]["S"]
        return {store.COMPLETED: COMPLETED, store.SPENT: SPENT, store.IN_PROGRESS: UNSETTLED}[status], item

    # -- invariants and the end --------------------------------------------------------------------------------

    @invariant()
    def at_most_one_link_per_intent(self) -> None:
        links = self.upstream.stats()["links"]
        owners = Counter(self.owner_of_upstream_key[upstream_key][:2] for upstream_key in links)
        assert all(count == 1 for count in owners.values()), owners
        assert len(links) == sum(len(intent.links) for intent in self.intents.values())

    def teardown(self) -> None:
        if sys.exc_info()[0] is None:  # the steps passed: settle everything, then count
            self._quiesce()

    def _quiesce(self) -> None:
        """7. Settle until nothing is due, then account for every link Dots holds."""
        for _ in range(5):
            if not any(intent.state == UNSETTLED for intent in self.intents.values()):
                break
            self._settle(None)
        assert not [intent.where() for intent in self.intents.values() if intent.state == UNSETTLED]
        final = self.function.settle()
        assert final["due"] == 0 and final["stranded"] == 0, final
        by_upstream_key = {link_id: key for key, link_id in self.upstream.stats()["links"].items()}
        for link in self.upstream.links():
            caller, key, body_name = self.owner_of_upstream_key[by_upstream_key[link["id"]]]
            intent = self._intent(caller, key)
            where = intent.where()
            if link["status"] == "canceled":
                assert intent.state == SPENT, f"a canceled link whose key is not spent: {where}"
                continue
            assert intent.state == COMPLETED and intent.completed == link["id"], f"a live link not recorded: {where}"
            headers = {"authorization": f"Bearer {token(caller)}"}
            read = self.function.request("GET", f"/payout-links/{link['id']}", headers=headers)
            assert read.status == 200 and read.json()["id"] == link["id"], f"its owner cannot read it: {where}"
            body = BODY_NAMED[body_name]
            replay = self.function.create(body.json, key=key, sub=caller)
            assert replay.status == 201 and replay.json()["id"] == link["id"], where
            assert not body.matches(replay.json()), where
        RUN["quiescent"] += 1


SETTINGS = settings(
    max_examples=28,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_one_link_per_intent_whatever_the_upstream_does(
    function, upstream, aws_clients, own_intent_table, monkeypatch, capsys
):
    function.set_env(
        PAYOUT_API_TIMEOUT_SECONDS=str(ATTEMPT_TIMEOUT_SECONDS),
        PAYOUT_API_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        SETTLE_AFTER_SECONDS="1",
        SETTLE_CONCURRENCY="1",
    )
    dynamodb, _ = aws_clients
    clock = StoreClock()
    monkeypatch.setattr(store, "time", clock)
    machine = type(
        "Machine",
        (ExactlyOnce,),
        {"function": function, "upstream": upstream, "dynamodb": dynamodb, "table": own_intent_table, "clock": clock},
    )
    RUN.clear()
    ANSWERS.clear()
    started = time.monotonic()
    try:
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        with capsys.disabled():
            print(
                f"\nexactly once: {RUN['sequences']} sequences ({RUN['quiescent']} settled to quiescence),"
                f" {RUN['steps']} requests, {RUN['abandoned']} intents abandoned, {RUN['settle runs']} settler runs"
                f" (settled {RUN['settler settled']}, released {RUN['settler released']},"
                f" spent {RUN['settler spent']})"
                f" in {time.monotonic() - started:.1f} s; answers: "
                + ", ".join(f"{answer} x{count}" for answer, count in ANSWERS.most_common())
            )
