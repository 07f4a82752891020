"""What a load run sends: creates with reused keys, the ambiguous upstream failures to inject, and reads and cancels."""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from local_stack.core.template import function_settings, load_template
from local_stack.stack import FUNCTION, LOCAL_NAMES, TEMPLATE_PATH, local_variables
from payout_links.budget import TimeBudget
from payout_links.settings import Settings
from payout_links.upstream import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, MIN_ATTEMPT_SECONDS

type Intent = tuple[str, str]  # (caller, key)


@dataclass(frozen=True)
class Planned:
    caller: str
    key: str
    amount: int
    reuse: str  # "new", "same-body" or "other-body"

    @property
    def intent(self) -> Intent:
        return self.caller, self.key


@dataclass(frozen=True)
class LinkOp:
    """A read or cancel of the link an earlier intent made, sent as `caller`: its owner, or for the "stranger"
    kinds another caller. Kinds: "read", "cancel", "cancel twice" (two DELETEs, one after the other), "claimed
    cancel" (the link is moved to `claimed` first), "stranger read", "stranger cancel"."""

    kind: str
    target: Intent
    caller: str

    @property
    def stranger(self) -> bool:
        return self.kind.startswith("stranger")


# What each kind of read or cancel must answer, request by request.
OP_KINDS = ("read", "cancel", "cancel twice", "claimed cancel", "stranger read", "stranger cancel")
OP_REQUESTS = {
    "read": ("GET",),
    "cancel": ("DELETE",),
    "cancel twice": ("DELETE", "DELETE"),
    "claimed cancel": ("DELETE",),
    "stranger read": ("GET",),
    "stranger cancel": ("DELETE",),
}


@dataclass(frozen=True)
class Kind:
    """An ambiguous upstream failure: the emulator fault, the status the caller must get, and whether the proxy
    retries it ("retry": up to the maximum attempts, "once": never, "deadline": while the deadline allows)."""

    name: str
    fault: dict[str, Any]
    expected: int
    attempts: str


@dataclass(frozen=True)
class FunctionLimits:
    """What decides how many upstream attempts one request makes: the stack's effective settings."""

    lambda_timeout: float
    attempt_timeout: float
    max_attempts: int

    @classmethod
    def effective(cls) -> FunctionLimits:
        """As the local stack configures the function: the template's values, overridden by our environment
        (which `start_stack` passes on)."""
        settings = function_settings(load_template(TEMPLATE_PATH), FUNCTION, LOCAL_NAMES)
        # The upstream URL (the third argument) plays no part in the attempts.
        env, timeout = local_variables(settings.environment, os.environ, ""), settings.timeout_seconds
        fields = Settings.model_fields
        return cls(
            lambda_timeout=float(os.environ.get("LAMBDA_TIMEOUT_SECONDS") or timeout),
            attempt_timeout=float(env.get("PAYOUT_API_TIMEOUT_SECONDS", fields["payout_api_timeout_seconds"].default)),
            max_attempts=int(env.get("PAYOUT_API_MAX_ATTEMPTS", fields["payout_api_max_attempts"].default)),
        )

    def attempts(self, kind: Kind) -> int:
        if kind.attempts == "retry":
            return self.max_attempts
        if kind.attempts == "once":
            return 1
        return self.timeout_attempts()

    def timeout_attempts(self) -> int:
        """How many attempts a request makes when every one times out, following
        `PayoutApiClient._create_with_retries`: an attempt lasts min(attempt timeout, time left); another follows
        its backoff while the deadline still leaves MIN_ATTEMPT_SECONDS. Computed for the extremes of the time spent
        before the first attempt and of the random backoff: if they disagree, the number of faults to queue is not
        knowable in advance."""
        counts = set()
        for spent in (0.0, 1.0):  # the lock write, a cold container's secret read
            for backoff_share in (0.0, 1.0):
                deadline = self.lambda_timeout - TimeBudget.for_timeout(self.lambda_timeout).response_reserve
                now, attempts = spent, 0
                while deadline - now >= MIN_ATTEMPT_SECONDS:
                    attempts += 1
                    now += min(self.attempt_timeout, deadline - now)
                    if attempts >= self.max_attempts:
                        break
                    delay = backoff_share * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
                    if now + delay + MIN_ATTEMPT_SECONDS > deadline:
                        break
                    now += delay
                counts.add(attempts)
        if len(counts) != 1:
            raise SystemExit(f"with these timeouts a timed-out request makes {sorted(counts)} attempts; cannot inject")
        return counts.pop()


def ambiguous_kinds(limits: FunctionLimits) -> list[Kind]:
    # The timeout's delay outlasts any attempt, so every attempt it meets times out; the link is made first.
    delay = limits.attempt_timeout + 1.0
    return [
        Kind("500 after create", {"status": 500, "after_create": True}, 502, "retry"),
        Kind("drop after create", {"drop": True, "after_create": True}, 502, "retry"),
        Kind(
            "unreadable 201",
            {"status": 201, "raw_body": "<html>upstream proxy</html>", "after_create": True},
            502,
            "once",
        ),
        Kind("timeout after create", {"delay_seconds": delay, "after_create": True}, 504, "deadline"),
    ]


def plan(requests: int, reuse_share: float, other_body_share: float, rng: random.Random) -> list[Planned]:
    """The request sequence: new intents, with a share of reuses of an earlier intent's key."""
    planned: list[Planned] = []
    intents: list[Planned] = []
    for _ in range(requests):
        if intents and rng.random() < reuse_share:
            earlier = rng.choice(intents)
            if rng.random() < other_body_share:
                planned.append(Planned(earlier.caller, earlier.key, earlier.amount + 1, "other-body"))
            else:
                planned.append(Planned(earlier.caller, earlier.key, earlier.amount, "same-body"))
        else:
            intent = Planned(f"user-{rng.randrange(200)}", str(uuid.uuid4()), rng.randrange(100, 500_000), "new")
            intents.append(intent)
            planned.append(intent)
    return planned


def choose_ambiguous(planned: list[Planned], share: float, kinds: list[Kind], rng: random.Random) -> dict[Intent, Kind]:
    """`share` of the reused keys, each with a kind of failure (every kind once before any twice)."""
    reused = list(dict.fromkeys(request.intent for request in planned if request.reuse != "new"))  # in plan order
    chosen = rng.sample(reused, min(len(reused), max(1, round(share * len(reused))))) if share > 0 else []
    assigned = [kinds[index % len(kinds)] for index in range(len(chosen))]
    rng.shuffle(assigned)
    return dict(zip(chosen, assigned, strict=True))


def schedule(planned: list[Planned], ambiguous: dict[Intent, Kind]) -> tuple[list[Planned], list[list[Planned]]]:
    """The first requests of the ambiguous intents (phase 1), and phase 2's tasks: one request each, except an
    ambiguous intent's retries, one task in its first retry's place, sent in order by one client."""
    firsts: dict[Intent, Planned] = {}
    retries: dict[Intent, list[Planned]] = {}
    tasks: list[list[Planned]] = []
    for request in planned:
        if request.intent not in ambiguous:
            tasks.append([request])
        elif request.reuse == "new":
            firsts[request.intent] = request
        elif request.intent in retries:
            retries[request.intent].append(request)
        else:
            retries[request.intent] = [request]
            tasks.append(retries[request.intent])
    for intent, sequence in retries.items():
        # Another body first: refused while the key is bound to its body after the ambiguous failure.
        sequence.sort(key=lambda request: request.reuse != "other-body")
        if all(request.reuse != "same-body" for request in sequence):
            first = firsts[intent]
            sequence.append(Planned(first.caller, first.key, first.amount, "same-body"))
    return list(firsts.values()), tasks


def plan_link_ops(
    planned: list[Planned],
    tasks: list[list[Planned]],
    counts: dict[str, int],
    rng: random.Random,
) -> list[list[Planned] | LinkOp]:
    """Phase 2's tasks with `counts[kind]` reads and cancels mixed in, each after the task that creates its link.

    Their links are those of intents with a single request (no reuse, not ambiguous): that request gets 201 and
    no other request races it, so the link exists once its task has answered. ThreadPoolExecutor.map starts tasks
    in order, so a read or cancel, placed after its target's task, only ever waits for a task already running.
    Cancels, cancels sent twice and claimed cancels each take a link of their own; reads and strangers' calls
    take any (a read may see a link canceled or claimed meanwhile). A stranger is another planned caller."""
    requests_of = Counter(request.intent for request in planned)
    position = {task[0].intent: index for index, task in enumerate(tasks) if requests_of[task[0].intent] == 1}
    eligible = list(position)
    callers = sorted({request.caller for request in planned})
    own = rng.sample(eligible, counts["cancel"] + counts["cancel twice"] + counts["claimed cancel"])
    targets: dict[str, list[Intent]] = {
        "cancel": own[: counts["cancel"]],
        "cancel twice": own[counts["cancel"] : counts["cancel"] + counts["cancel twice"]],
        "claimed cancel": own[counts["cancel"] + counts["cancel twice"] :],
    }
    for kind in ("read", "stranger read", "stranger cancel"):
        targets[kind] = [rng.choice(eligible) for _ in range(counts[kind])]
    after: dict[int, list[LinkOp]] = defaultdict(list)  # tasks before it -> ops
    for kind, intents in targets.items():
        for intent in intents:
            caller = intent[0]
            if kind.startswith("stranger"):
                caller = rng.choice([other for other in callers if other != intent[0]])
            after[rng.randint(position[intent] + 1, len(tasks))].append(LinkOp(kind, intent, caller))
    mixed: list[list[Planned] | LinkOp] = []
    for index in range(len(tasks) + 1):
        mixed.extend(after[index])
        if index < len(tasks):
            mixed.append(tasks[index])
    return mixed


def op_counts(requests: int, reads: float, cancels: float, strangers: float, claimed: float) -> dict[str, int]:
    """How many of each read or cancel: shares of `requests`; of the cancel requests, a `claimed` share on
    claimed links and as many cancels sent twice (two requests each); the strangers' calls half reads, half
    cancels."""
    cancel_requests = round(requests * cancels)
    special = round(cancel_requests * claimed)  # claimed cancels, and as many cancels sent twice
    stranger = round(requests * strangers)
    return {
        "read": round(requests * reads),
        "cancel": max(0, cancel_requests - 3 * special),
        "cancel twice": special,
        "claimed cancel": special,
        "stranger read": stranger - stranger // 2,
        "stranger cancel": stranger // 2,
    }
