"""Load without loss: drive the local stack over HTTP and prove that every intent made exactly one link.

It starts a Dots emulator and `python -m local_stack` (embedded moto, LOCAL_CONCURRENCY function processes),
then sends REQUESTS requests from CLIENTS concurrent keep-alive clients. About 10% reuse an earlier intent's
key: most with the same body (a replay, or a 409 while the first is in flight), some with a different body
(a 422). It prints latency percentiles, the count of each status, the links the emulator created and the
distinct intents, and exits 1 if those two differ or if any 5xx appeared (no fault is injected).

    make load                      # or: .venv/bin/python bench/load.py --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator  # noqa: E402

SIGNING_KEY = "load-test-key-not-a-secret-0123456789abcdef"  # the local gateway does not check signatures


@dataclass(frozen=True)
class Planned:
    caller: str
    key: str
    amount: int
    reuse: str  # "new", "same-body" or "other-body"


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_stack(upstream_url: str, concurrency: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    env.update(
        PORT=str(port),
        PAYOUT_API_BASE_URL=upstream_url,
        LOCAL_CONCURRENCY=str(concurrency),
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Ctrl-C"):
            return process, f"http://127.0.0.1:{port}"
    raise SystemExit(f"the local stack did not start; see {log_path}")


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--containers", type=int, default=4, help="function processes (LOCAL_CONCURRENCY)")
    parser.add_argument("--reuse", type=float, default=0.10, help="share of requests reusing an earlier key")
    parser.add_argument("--other-body", type=float, default=0.3, help="share of reuses with a different body")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    planned = plan(args.requests, args.reuse, args.other_body, random.Random(args.seed))
    tokens = {
        caller: jwt.encode({"sub": caller}, SIGNING_KEY, algorithm="HS256") for caller in {p.caller for p in planned}
    }
    log_path = Path(tempfile.gettempdir()) / f"payout-link-proxy-load-{os.getpid()}.log"

    with DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY) as emulator:
        stack, url = start_stack(emulator.base_url, args.containers, log_path)
        try:
            local = threading.local()

            def send(request: Planned) -> tuple[Planned, int, float]:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=url, timeout=30)
                started = time.perf_counter()
                response = local.client.post(
                    "/payout-links",
                    json={"amount": request.amount, "user_id": request.caller, "metadata": {"load": "test"}},
                    headers={"authorization": f"Bearer {tokens[request.caller]}", "idempotency-key": request.key},
                )
                return request, response.status_code, (time.perf_counter() - started) * 1000

            wall_started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as clients:
                results = list(clients.map(send, planned))
            wall = time.perf_counter() - wall_started
            assert emulator.wait_idle()
            links = emulator.stats()["links_created"]
        finally:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=30)

    latencies = [elapsed for _, _, elapsed in results]
    statuses = Counter(status for _, status, _ in results)
    by_kind = Counter((request.reuse, status) for request, status, _ in results)
    intents = len({(request.caller, request.key) for request in planned})
    server_errors = sum(count for status, count in statuses.items() if status >= 500)

    print(f"load: {args.requests} requests, {args.clients} clients, {args.containers} function processes")
    print(f"  wall time            {wall:8.2f} s   ({args.requests / wall:.0f} requests/s)")
    print(f"  latency p50          {percentile(latencies, 0.50):8.1f} ms")
    print(f"  latency p95          {percentile(latencies, 0.95):8.1f} ms")
    print(f"  latency p99          {percentile(latencies, 0.99):8.1f} ms")
    print(f"  latency mean         {statistics.fmean(latencies):8.1f} ms")
    print("  statuses             " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
    for kind in ("new", "same-body", "other-body"):
        counts = ", ".join(f"{status}: {count}" for (k, status), count in sorted(by_kind.items()) if k == kind)
        print(f"    {kind:<18} {counts}")
    print(f"  links created        {links:8d}")
    print(f"  distinct intents     {intents:8d}")

    failures = []
    if links != intents:
        failures.append(f"{links} links for {intents} intents")
    if server_errors:
        failures.append(f"{server_errors} answers were 5xx with no fault injected (log: {log_path})")
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("OK: one link per intent, no 5xx")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
