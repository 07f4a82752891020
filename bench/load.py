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
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from load_plan import (
    OP_REQUESTS,
    FunctionLimits,
    Intent,
    Kind,
    LinkOp,
    Planned,
    ambiguous_kinds,
    choose_ambiguous,
    op_counts,
    plan,
    plan_link_ops,
    schedule,
)
from load_report import Batch, LoadReport, OpResult, Result, Run, build_report, format_report

from local_stack.core.aws_resources import free_port
from local_stack.core.gateway import routes_from_template
from local_stack.core.template import load_template
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator
from local_stack.issuer import LocalIssuer
from local_stack.spawn import StackDidNotStart, spawn_stack, without_aws_endpoint
from local_stack.stack import DEFAULT_AUDIENCE, FUNCTION, TEMPLATE_PATH

ROUTE = ("POST", "/payout-links")
LINK_PATH = "/payout-links/{id}"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def run(args: argparse.Namespace, log_dir: Path) -> LoadReport:
    """One run as `args` asks, the stack's log written in `log_dir`; what it measured and checked."""
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
    log_path = log_dir / f"payout-link-proxy-load-{os.getpid()}.log"

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

            def send(task: list[Planned] | LinkOp) -> list[Result] | list[OpResult]:
                return act(task) if isinstance(task, LinkOp) else create(task)

            wall_started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as clients:
                answered = [result for results in clients.map(send, tasks) for result in results]
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

    return build_report(
        Run(
            clients=args.clients,
            containers=args.containers,
            planned=planned,
            ambiguous=ambiguous,
            batches=batches,
            phase1_seconds=phase1,
            load=load,
            ops=ops,
            final=final,
            phase2_seconds=wall,
            emulator=stats,
            log_path=log_path,
        )
    )


def main(argv: list[str] | None = None) -> int:
    report = run(parse_args(argv), Path(tempfile.gettempdir()))
    print(format_report(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
