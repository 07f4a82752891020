"""Load without loss: drive the local stack over HTTP and prove that every intent made exactly one link, even
when the upstream fails after making it.

It starts a Dots emulator (in this process, to inject faults), an OpenID issuer (local_stack/issuer.py, in this
process: it signs the callers' tokens) and `python -m local_stack` trusting it (embedded moto, LOCAL_CONCURRENCY
function processes), then plans REQUESTS requests: new intents, and about 10% reusing an earlier intent's key,
most with the same body (a replay, or a 409 while the first is in flight), some with a different body (a 422).
For 10% of the reused keys the intent's first request meets an ambiguous upstream failure, one of: a 500 after
the link was made, a connection dropped after it, an unreadable 201, a timeout after it. The run has two
phases:

1. Ambiguous failures, alone (see `run_ambiguous` for how the faults reach exactly these requests): each must
   answer 502 (504 for the timeout), and each must leave exactly one link at the emulator.
2. Load: every other request from CLIENTS concurrent keep-alive clients, no fault queued. The retries of an
   ambiguous intent run in order on one client: another body first (422: the key stays bound to its body), then
   the same body (201 with the link made in phase 1; one is added when the plan had none). Mixed in, a share of
   reads and cancels (GET and DELETE /payout-links/{id}) of links made earlier in the run, each sent once the
   create that made its link has answered (see `plan_link_ops`): reads and cancels by the link's owner, a few
   cancels sent twice, a few cancels of links first moved to `claimed` through the emulator's control route, and
   a few reads and cancels by another caller.

It prints latency percentiles and throughput of phase 2, the count of each status, the ambiguous failures
injected and recovered, the links the emulator made and the intents, and exits 1 unless all of this holds:

- every ambiguous first request got its intended status (502, or 504 for a timeout), its kind's upstream
  attempts took exactly the faults queued for them, and each made one link;
- every retry of an ambiguous intent with its own body got 201 with a link made in phase 1, and every retry with
  another body got 422;
- every other request got 201 or 409 (in flight) if its body is the one that took the key, else 422 (a reuse may
  overtake the request it reuses, so the winning body is the one the intent's 201s were for, and only one body
  may win); no 5xx but the intended 502/504;
- every 201 carries its own request's amount, every 201 for one (caller, key) the same link id, and no two
  intents share a link id;
- the emulator's links are exactly the link ids the 201s carry, and their number is both the number of intents
  that got a 201 and the number of distinct intents. Together with the above, every intent has exactly one
  link at the emulator: a second link for an intent would be one that no 201 carries;
- every owner read got 200 with its link's id; every cancel 200 with the link `canceled` (the second of a
  cancel sent twice too), every cancel of a claimed link 409 `not-cancelable`; every read or cancel by another
  caller 404; the emulator saw exactly the owners' reads and cancels (a GET more for each cancel it refused), so
  no stranger's request reached it, and it holds the canceled links canceled and the claimed ones claimed.

    make load                      # or: .venv/bin/python bench/load.py --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent

from local_stack.core.aws_resources import free_port  # noqa: E402
from local_stack.core.gateway import routes_from_template  # noqa: E402
from local_stack.core.template import function_settings, load_template  # noqa: E402
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator  # noqa: E402
from local_stack.issuer import LocalIssuer  # noqa: E402
from local_stack.spawn import StackDidNotStart, spawn_stack, without_aws_endpoint  # noqa: E402
from local_stack.stack import DEFAULT_AUDIENCE, FUNCTION, LOCAL_NAMES, TEMPLATE_PATH, local_variables  # noqa: E402
from payout_links.budget import TimeBudget  # noqa: E402
from payout_links.settings import Settings  # noqa: E402
from payout_links.upstream import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, MIN_ATTEMPT_SECONDS  # noqa: E402

ROUTE = ("POST", "/payout-links")
LINK_PATH = "/payout-links/{id}"
PROBLEM_TYPE_PREFIX = "urn:payout-link-proxy:problem:"

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
class Result:
    request: Planned
    role: str  # the request's `reuse`, "ambiguous" (a first request meeting a fault), or "retry <reuse>"
    status: int
    ms: float
    link_id: str | None
    amount: Any


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


@dataclass(frozen=True)
class OpResult:
    op: LinkOp
    method: str
    status: int
    ms: float
    link_id: str | None  # the target's link, as its create's 201 carried it
    body: Any  # the parsed answer, or None

    def problem(self) -> str | None:
        kind = self.body.get("type") if isinstance(self.body, dict) else None
        return kind.removeprefix(PROBLEM_TYPE_PREFIX) if isinstance(kind, str) else None


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


class Links:
    """The link each intent's 201 carried, and when an intent's task is over (its link known, or never)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[Intent, str] = {}
        self._done: defaultdict[Intent, threading.Event] = defaultdict(threading.Event)

    def created(self, result: Result) -> None:
        if result.status == 201 and result.link_id is not None:
            with self._lock:
                self._ids.setdefault(result.request.intent, result.link_id)

    def done(self, intent: Intent) -> None:
        with self._lock:
            event = self._done[intent]
        event.set()

    def wait(self, intent: Intent, timeout: float) -> str | None:
        with self._lock:
            event = self._done[intent]
        event.wait(timeout)
        with self._lock:
            return self._ids.get(intent)


def start_stack(upstream_url: str, issuer_url: str, concurrency: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`python -m local_stack` against this run's emulator, trusting this run's issuer (JWT_ISSUER)."""
    env = without_aws_endpoint(os.environ)
    env.update(
        PAYOUT_API_BASE_URL=upstream_url,
        JWT_ISSUER=issuer_url,
        JWT_AUDIENCE=DEFAULT_AUDIENCE,
        LOCAL_CONCURRENCY=str(concurrency),
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    try:
        spawned = spawn_stack(env, port=free_port(), log_path=log_path)
    except StackDidNotStart as exc:
        raise SystemExit(str(exc)) from None
    return spawned.process, spawned.url


def route_scope() -> str:
    """A scope the route accepts, from the template (the local gateway refuses a token without one: 403)."""
    for route in routes_from_template(load_template(TEMPLATE_PATH), FUNCTION):
        if (route.method, route.path) == ROUTE:
            return route.scopes[0] if route.scopes else ""
    raise SystemExit(f"no route {' '.join(ROUTE)} in template.yaml")


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Sender:
    """POST /payout-links as a frontend, one keep-alive client per thread."""

    def __init__(self, url: str, tokens: dict[str, str], timeout: float) -> None:
        self._url, self._tokens, self.timeout = url, tokens, timeout
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self._url, timeout=self.timeout)
            with self._lock:
                self._clients.append(client)
        return client

    def send(self, request: Planned, role: str) -> Result:
        client = self._client()
        started = time.perf_counter()
        try:
            response = client.post(
                ROUTE[1],
                json={"amount": request.amount, "user_id": request.caller, "metadata": {"load": "test"}},
                headers={"authorization": f"Bearer {self._tokens[request.caller]}", "idempotency-key": request.key},
            )
        except httpx.HTTPError:  # no answer at all: status 0, which no request may get
            return Result(request, role, 0, (time.perf_counter() - started) * 1000, None, None)
        elapsed = (time.perf_counter() - started) * 1000
        link_id = amount = None
        if response.status_code == 201:
            body = response.json()
            link_id, amount = body.get("id"), body.get("amount")
        return Result(request, role, response.status_code, elapsed, link_id, amount)

    def send_op(self, op: LinkOp, method: str, link_id: str | None) -> OpResult:
        """GET or DELETE /payout-links/{id} as `op.caller`; status 0 when no link was made to act on, or when
        no answer came."""
        if link_id is None:
            return OpResult(op, method, 0, 0.0, None, None)
        started = time.perf_counter()
        try:
            response = self._client().request(
                method,
                LINK_PATH.format(id=link_id),
                headers={"authorization": f"Bearer {self._tokens[op.caller]}"},
            )
        except httpx.HTTPError:
            return OpResult(op, method, 0, (time.perf_counter() - started) * 1000, link_id, None)
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = None
        return OpResult(op, method, response.status_code, elapsed, link_id, body)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@dataclass
class Batch:
    kind: Kind
    results: list[Result]
    faults: int  # queued
    upstream_requests: int  # made while the batch ran
    links: dict[str, str]  # made while the batch ran: derived upstream key -> link id


def run_ambiguous(
    emulator: DotsEmulator,
    sender: Sender,
    firsts: list[Planned],
    ambiguous: dict[Intent, Kind],
    kinds: list[Kind],
    limits: FunctionLimits,
    workers: int,
) -> list[Batch]:
    """Phase 1: the first request of every ambiguous intent, meeting its fault.

    The emulator's faults are one global FIFO queue whose head every upstream request takes. So this phase runs
    alone (nothing else is sent to the stack meanwhile), one kind at a time, with one queued fault whose `count`
    is the number of upstream attempts the kind's requests make in all: while a batch runs, every upstream
    request is an attempt of one of its requests, and every attempt meets the same fault, so which request takes
    which share does not matter. The attempts per request follow the proxy's rules (upstream.py): a 5xx or a
    dropped connection is retried up to PAYOUT_API_MAX_ATTEMPTS, an unreadable 2xx is not retried, a timeout is
    retried while the deadline allows (`FunctionLimits.timeout_attempts`). Each batch then checks that the
    emulator saw exactly that many requests: none short (a fault left over would hit phase 2), none beyond (an
    attempt that met no fault). Each batch sends at most `workers` requests at once (the function processes),
    so that none waits for a container behind a timing-out one."""
    batches = []
    for kind in kinds:
        requests = [request for request in firsts if ambiguous[request.intent] is kind]
        if not requests:
            continue
        before = emulator.stats()
        faults = len(requests) * limits.attempts(kind)
        emulator.inject({**kind.fault, "count": faults})
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda request: sender.send(request, "ambiguous"), requests))
        # A delayed answer may outlive its attempt; until it is written the emulator is not idle.
        if not emulator.wait_idle(timeout=limits.attempt_timeout + 5):
            raise SystemExit("the emulator stayed busy after the ambiguous failures")
        after = emulator.stats()
        links = {key: link for key, link in after["links"].items() if key not in before["links"]}
        batches.append(Batch(kind, results, faults, after["requests"] - before["requests"], links))
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--containers", type=int, default=4, help="function processes (LOCAL_CONCURRENCY)")
    parser.add_argument("--reuse", type=float, default=0.10, help="share of requests reusing an earlier key")
    parser.add_argument("--other-body", type=float, default=0.3, help="share of reuses with a different body")
    parser.add_argument(
        "--ambiguous", type=float, default=0.10, help="share of reused keys whose first request fails ambiguously"
    )
    parser.add_argument("--reads", type=float, default=0.15, help="share of requests reading an owned link")
    parser.add_argument("--cancels", type=float, default=0.05, help="share of requests canceling an owned link")
    parser.add_argument(
        "--claimed", type=float, default=0.15, help="share of cancels on claimed links (as many are sent twice)"
    )
    parser.add_argument(
        "--strangers", type=float, default=0.02, help="share of requests reading or canceling another's link"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    limits = FunctionLimits.effective()
    kinds = ambiguous_kinds(limits)
    counts = op_counts(args.requests, args.reads, args.cancels, args.strangers, args.claimed)
    creates = args.requests - sum(count * len(OP_REQUESTS[kind]) for kind, count in counts.items())
    planned = plan(creates, args.reuse, args.other_body, rng)
    ambiguous = choose_ambiguous(planned, args.ambiguous, kinds, rng)
    firsts, create_tasks = schedule(planned, ambiguous)
    tasks = plan_link_ops(planned, create_tasks, counts, rng)
    scope = route_scope()
    log_path = Path(tempfile.gettempdir()) / f"payout-link-proxy-load-{os.getpid()}.log"

    # The stack trusts this run's own issuer (the gateway checks every token as API Gateway does), which signs each
    # caller's token.
    with LocalIssuer(audience=DEFAULT_AUDIENCE) as issuer, DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY) as emulator:
        tokens = {caller: issuer.mint({"sub": caller, "scope": scope}) for caller in {p.caller for p in planned}}
        stack, url = start_stack(emulator.base_url, issuer.url, args.containers, log_path)
        # Long enough for a request that waits for a container and then times out upstream.
        sender = Sender(url, tokens, timeout=2 * limits.lambda_timeout + 10)
        try:
            phase1_started = time.perf_counter()
            batches = run_ambiguous(emulator, sender, firsts, ambiguous, kinds, limits, args.containers)
            phase1 = time.perf_counter() - phase1_started

            links = Links()
            control = emulator.base_url.rsplit("/api", 1)[0] + "/_emulator/links/{id}/status"

            def create(task: list[Planned]) -> list[Result]:
                retry = task[0].intent in ambiguous
                results = []
                for request in task:
                    results.append(sender.send(request, f"retry {request.reuse}" if retry else request.reuse))
                    links.created(results[-1])
                links.done(task[0].intent)
                return results

            def act(op: LinkOp) -> list[OpResult]:
                link_id = links.wait(op.target, timeout=sender.timeout)
                if op.kind == "claimed cancel" and link_id is not None:
                    # As the payee would: through the emulator's control route, before the owner cancels.
                    httpx.post(control.format(id=link_id), json={"status": "claimed"}, timeout=10).raise_for_status()
                return [sender.send_op(op, method, link_id) for method in OP_REQUESTS[op.kind]]

            def run(task: list[Planned] | LinkOp) -> list[Result] | list[OpResult]:
                return act(task) if isinstance(task, LinkOp) else create(task)

            wall_started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as clients:
                answered = [result for results in clients.map(run, tasks) for result in results]
            wall = time.perf_counter() - wall_started
            if not emulator.wait_idle():
                raise SystemExit("the emulator stayed busy after the load")
            stats = emulator.stats()
            load = [result for result in answered if isinstance(result, Result)]
            ops = [result for result in answered if isinstance(result, OpResult)]
            # Where the acted-on links stand at the emulator now: canceled, claimed, or (a failure) anything else.
            final = {result.link_id: emulator.link(result.link_id)["status"] for result in ops if result.link_id}
        finally:
            sender.close()
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=30)

    return report(args, planned, ambiguous, batches, phase1, load, ops, final, wall, stats, log_path)


def report(
    args: argparse.Namespace,
    planned: list[Planned],
    ambiguous: dict[Intent, Kind],
    batches: list[Batch],
    phase1: float,
    load: list[Result],
    ops: list[OpResult],
    final: dict[str, str],
    wall: float,
    stats: dict[str, Any],
    log_path: Path,
) -> int:
    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    phase1_results = [result for batch in batches for result in batch.results]
    results = phase1_results + load
    intents = {request.intent for request in planned}

    # Phase 1: the intended status, exactly the queued faults consumed, one link per request.
    made_in_phase1: set[str] = set()
    intended_5xx: Counter[int] = Counter()
    for batch in batches:
        name, expected = batch.kind.name, batch.kind.expected
        wrong = Counter(result.status for result in batch.results if result.status != expected)
        intended_5xx[expected] += sum(1 for result in batch.results if result.status == expected)
        check(not wrong, f"{name}: {dict(wrong)} instead of {expected}")
        check(
            batch.upstream_requests == batch.faults,
            f"{name}: {batch.faults} faults queued, {batch.upstream_requests} upstream requests",
        )
        check(len(batch.links) == len(batch.results), f"{name}: {len(batch.links)} links for {len(batch.results)}")
        made_in_phase1.update(batch.links.values())

    # Phase 2: the status each request may get. Concurrent requests of one intent race for its key, and the body
    # that takes it wins: then a request with the winning body gets 201 (or 409 while another is in flight), one
    # with another body 422, whatever the plan's order (a reuse may overtake the request it reuses).
    # An ambiguous intent's retries run in order, after its failure: its own body 201, another body 422.
    winning: dict[Intent, set[int]] = defaultdict(set)
    for result in load:
        if result.status == 201:
            winning[result.request.intent].add(result.request.amount)
    two_bodies = [intent for intent, amounts in winning.items() if len(amounts) > 1]
    check(not two_bodies, f"{len(two_bodies)} intents got a 201 for two bodies: {two_bodies[:3]}")

    def allowed(result: Result) -> set[int]:
        if result.role == "retry same-body":
            return {201}
        if result.role == "retry other-body":
            return {422}
        return {201, 409} if result.request.amount in winning[result.request.intent] else {422}

    unexpected = Counter((result.role, result.status) for result in load if result.status not in allowed(result))
    for (role, status), count in sorted(unexpected.items()):
        check(False, f"{count} {role} requests got {status}")
    stray_5xx = sum(1 for result in [*load, *ops] if result.status >= 500) + sum(
        1
        for result in phase1_results
        if result.status >= 500 and result.status != ambiguous[result.request.intent].expected
    )
    check(not stray_5xx, f"{stray_5xx} answers were 5xx besides the intended ones (log: {log_path})")

    # Recovery of each ambiguous intent: its own body gets a link made in phase 1, another body 422.
    recovered = defaultdict(lambda: True)
    for result in load:
        intent = result.request.intent
        if intent in ambiguous:
            if result.role == "retry same-body":
                recovered[intent] &= result.status == 201 and result.link_id in made_in_phase1
            else:
                recovered[intent] &= result.status == 422
    not_recovered = [intent for intent in ambiguous if not recovered.get(intent, False)]
    check(not not_recovered, f"{len(not_recovered)} ambiguous intents not recovered: {not_recovered[:3]}")

    # Links: one per intent, carried by every 201 of that intent and by no other, each with its request's amount.
    links_of: dict[Intent, set[str | None]] = defaultdict(set)
    for result in results:
        if result.status == 201:
            links_of[result.request.intent].add(result.link_id)
            check(
                result.amount == result.request.amount,
                f"a 201 for {result.request.intent} carries amount {result.amount!r}, not {result.request.amount}",
            )
    split = {intent: ids for intent, ids in links_of.items() if len(ids) != 1}
    check(not split, f"{len(split)} intents got different link ids: {list(split.items())[:3]}")
    handed_out = Counter(link_id for ids in links_of.values() for link_id in ids)
    shared = [link_id for link_id, count in handed_out.items() if count > 1]
    check(not shared, f"{len(shared)} link ids were handed to more than one intent")
    at_emulator = set(stats["links"].values())
    links = stats["links_created"]
    check(
        at_emulator == set(handed_out),
        f"{len(at_emulator - set(handed_out))} links no 201 carries, "
        f"{len(set(handed_out) - at_emulator)} link ids the emulator did not make",
    )
    check(links == len(links_of), f"{links} links for {len(links_of)} intents that got a 201")
    check(links == len(intents), f"{links} links for {len(intents)} intents")

    # Reads and cancels: the owner's answered with its own link, canceled unless claimed (409); a stranger's 404.
    def wrong_answer(result: OpResult) -> str | None:
        body = result.body if isinstance(result.body, dict) else {}
        if result.link_id is None:
            return "no link to act on"
        if result.op.stranger:
            return None if result.status == 404 and result.problem() == "not-found" else f"{result.status}"
        if result.op.kind == "claimed cancel":
            return None if result.status == 409 and result.problem() == "not-cancelable" else f"{result.status}"
        if result.status != 200 or body.get("id") != result.link_id:
            return f"{result.status} {'(another id)' if result.status == 200 else result.problem()}"
        if result.method == "DELETE" and body.get("status") != "canceled":
            return f"200 with status {body.get('status')!r}"
        return None

    wrong_ops = Counter((result.op.kind, result.method, wrong) for result in ops if (wrong := wrong_answer(result)))
    for (kind, method, wrong), count in sorted(wrong_ops.items()):
        check(False, f"{count} {kind} requests ({method}) got {wrong}")
    # Dots saw the owners' requests and no stranger's: a GET per read, a DELETE per cancel, and a GET more for
    # each DELETE it refused (a claimed link, or the second DELETE of a cancel sent twice). An owner's request
    # answered wrongly may or may not have reached Dots: it widens the range (reported above already).
    reads, cancels = [0, 0], [0, 0]  # the least and the most the owners' requests can have made
    first_delete: dict[LinkOp, bool] = {}  # a cancel sent twice: whether its first DELETE answered right
    for result in ops:
        if result.op.stranger or result.link_id is None:
            continue  # a stranger's request must make none; one never sent makes none
        right = wrong_answer(result) is None
        if result.method == "GET":
            reads = [reads[0] + right, reads[1] + 1]
            continue
        cancels = [cancels[0] + right, cancels[1] + 1]
        refused: bool | None = result.op.kind == "claimed cancel"  # None: unknown
        if result.op.kind == "cancel twice":
            if result.op not in first_delete:
                first_delete[result.op] = right
            else:  # refused if the first canceled the link; unknown if it went wrong
                refused = True if first_delete[result.op] else None
        least, most = (int(refused), int(refused)) if right and refused is not None else (0, 1)
        reads = [reads[0] + least, reads[1] + most]
    expected_reads = f"{reads[0]}" if reads[0] == reads[1] else f"{reads[0]} to {reads[1]}"
    expected_cancels = f"{cancels[0]}" if cancels[0] == cancels[1] else f"{cancels[0]} to {cancels[1]}"
    check(
        reads[0] <= stats["reads"] <= reads[1] and cancels[0] <= stats["cancels"] <= cancels[1],
        f"Dots saw {stats['reads']} reads and {stats['cancels']} cancels; the owners' requests make "
        f"{expected_reads} and {expected_cancels}",
    )
    should_be = {
        result.link_id: "claimed" if result.op.kind == "claimed cancel" else "canceled"
        for result in ops
        if not result.op.stranger and result.method == "DELETE" and wrong_answer(result) is None
    }
    off = {link_id: final.get(link_id) for link_id, status in should_be.items() if final.get(link_id) != status}
    check(not off, f"{len(off)} links answered canceled or claimed are not so at Dots: {list(off.items())[:3]}")

    sent = [result for result in ops if result.link_id is not None]
    latencies = [result.ms for result in [*load, *sent]]
    statuses = Counter(result.status for result in [*results, *sent])
    by_role = Counter((result.role, result.status) for result in results)
    phase2 = len(load) + len(sent)
    print(f"load: {len(results) + len(sent)} requests, {args.clients} clients, {args.containers} function processes")
    print(f"  phase 1 (ambiguous)  {len(phase1_results):8d} requests in {phase1:.2f} s, one kind at a time")
    print(f"  phase 2 (load)       {phase2:8d} requests in {wall:.2f} s ({phase2 / wall:.0f} requests/s)")
    print(f"  latency p50          {percentile(latencies, 0.50):8.1f} ms   (phase 2)")
    print(f"  latency p95          {percentile(latencies, 0.95):8.1f} ms")
    print(f"  latency p99          {percentile(latencies, 0.99):8.1f} ms")
    print(f"  latency mean         {statistics.fmean(latencies):8.1f} ms")
    print("  statuses             " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
    for role in ("new", "same-body", "other-body", "ambiguous", "retry other-body", "retry same-body"):
        counts = ", ".join(f"{status}: {count}" for (r, status), count in sorted(by_role.items()) if r == role)
        print(f"    {role:<18} {counts}")
    print("  intended 5xx         " + ", ".join(f"{status}: {count}" for status, count in sorted(intended_5xx.items())))
    print(f"  ambiguous injected   {len(ambiguous):8d}   recovered {len(ambiguous) - len(not_recovered)}")
    for batch in batches:
        print(
            f"    {batch.kind.name:<20} {len(batch.results):3d} intents, {batch.faults:3d} faults, "
            f"{batch.upstream_requests:3d} upstream requests, {len(batch.links):3d} links"
        )
    by_op = Counter((result.op.kind, result.method, result.status) for result in sent)
    unsent = f"; {len(ops) - len(sent)} not sent: no link" if len(ops) > len(sent) else ""
    print(f"  reads and cancels    {len(sent):8d}   (phase 2, of links made earlier in the run{unsent})")
    for kind in OP_KINDS:
        answers = by_op.items()
        print(
            f"    {kind:<18} " + ", ".join(f"{m} {status}: {n}" for (k, m, status), n in sorted(answers) if k == kind)
        )
    print(
        f"  Dots reads, cancels  {stats['reads']:8d}, {stats['cancels']}"
        f"   (the owners' calls make {expected_reads}, {expected_cancels})"
    )
    print(f"  links created        {links:8d}")
    print(f"  intents with a 201   {len(links_of):8d}")
    print(f"  distinct intents     {len(intents):8d}")

    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print(
            "OK: one link per intent, ambiguous failures recovered, no 5xx but the intended ones; owners read and "
            "cancel their own links, strangers get 404 and never reach Dots"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
