"""`make run` always stops: SIGTERM, or Ctrl-C's SIGINT, ends every process the stack started (the API's execution
environments, the scheduled function's, anything else) within 5 s, whatever they are doing: idle, answering, waiting
on a slow upstream, or being started to replace one. Twenty rounds, each a stack of its own (with its own embedded
emulator) under traffic, then a signal while requests are in flight."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_stack.core.aws_resources import free_port
from local_stack.stack import DEMO_PARTNER_SECRETS
from tests.conftest import start_stack
from tests.support import (
    RunningStack,
    new_key,
    new_webhook_id,
    partner_event,
    payout_body,
    signed_webhook,
    token,
    wait_until,
)

pytestmark = pytest.mark.e2e

ROUNDS = 20
STOP_WITHIN_SECONDS = 5.0
SIGNALS = 100
# Every process the stack starts inherits its environment: this variable, with a value of the round's own, finds
# each of them in /proc, even one started after the descendants were listed.
MARKER = "LOCAL_STACK_STOP_TEST"
AUTH = {"authorization": f"Bearer {token('stop-test-user')}", "content-type": "application/json"}
DEMO_PARTNER, DEMO_SECRETS = next(iter(DEMO_PARTNER_SECRETS.items()))


def descendants(pid: int) -> set[int]:
    """The processes below `pid`, children of any of its threads, recursively."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in map(int, children.read_text().split()):
                    if child not in found:
                        found.add(child)
                        pending.append(child)
    return found


def marked(value: str) -> set[int]:
    """Every live process whose environment carries MARKER=`value`."""
    needle = f"{MARKER}={value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie left for its parent to reap (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def traffic(running: RunningStack, upstream: str, calls: list[threading.Thread]) -> None:
    """Creates (two of them waiting on a slow upstream, one meeting a 503), a partner's webhook, a list and a run of
    the settler (its environment starts cold), each in a thread of its own; returns at once."""
    control = upstream.removesuffix("/api") + "/_emulator/faults"
    faults = [{"delay_seconds": 20}, {"status": 503}, {"delay_seconds": 20}]
    httpx.post(control, json=faults, timeout=10).raise_for_status()

    def send(method: str, url: str, **request: object) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the stack goes away under it
            httpx.request(method, url, timeout=30, **request)  # type: ignore[arg-type]

    webhook = signed_webhook(partner_event(), partner=DEMO_PARTNER, secret=DEMO_SECRETS[0], webhook_id=new_webhook_id())
    requests = [
        *(
            ("POST", "/payout-links", {"json": payout_body(), "headers": {**AUTH, "idempotency-key": new_key()}})
            for _ in range(5)
        ),
        ("POST", webhook.path, {"content": webhook.body, "headers": webhook.headers}),
        ("GET", "/payout-links", {"headers": AUTH}),
    ]
    targets = [(method, f"{running.url}{path}", request) for method, path, request in requests]
    targets.append(("POST", f"{running.control_url}/schedules/SettlerFunction/run", {}))
    for method, url, request in targets:
        thread = threading.Thread(target=send, args=(method, url), kwargs=request, daemon=True)
        thread.start()
        calls.append(thread)


def upstream_requests(upstream: str) -> int:
    return httpx.get(upstream.removesuffix("/api") + "/_emulator/stats", timeout=10).json()["requests"]


@pytest.fixture
def moto_process() -> Iterator[str]:
    """A moto server of the test's own, in a process of its own, that every round's stack uses: each round then
    starts in about two seconds rather than four, and the settlers that run all the time in them touch no table of
    the session's (in-process moto servers share one backend)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=1)
        return True
    return False


def test_a_signal_ends_every_process_the_stack_started_within_5_s_whatever_they_are_doing(tmp_path, moto_process):
    stops: list[float] = []
    failures: list[str] = []
    for round_number in range(ROUNDS):
        tag = uuid.uuid4().hex
        running = start_stack(
            tmp_path,
            AWS_ENDPOINT_URL=moto_process,
            LOCAL_CONCURRENCY="2",
            # The settler runs when asked (traffic): its environment then starts while the API is busy.
            LOCAL_SCHEDULE_SECONDS="0",
            PAYOUT_API_TIMEOUT_SECONDS="15",
            LAMBDA_TIMEOUT_SECONDS="25",
            **{MARKER: tag},
        )
        upstream = next(line for line in running.banner.splitlines() if "upstream:" in line).split()[-1]
        calls: list[threading.Thread] = []
        started: set[int] = set()
        try:
            traffic(running, upstream, calls)
            # A create is in the function, waiting on the upstream; others wait for an environment.
            wait_until(lambda: upstream_requests(upstream) >= 1, timeout=20)  # noqa: B023 - waited for at once
            time.sleep(0.1 * (round_number % 4))  # a little later into the requests, round by round
            # Every third round an environment crashes, and the pool starts another in its place: just before the
            # signal (the new one is starting when it comes), or just after (one is asked for while stopping).
            crash = round_number % 3 == 2
            crash_after_signal = crash and round_number % 2 == 1
            if crash and not crash_after_signal:
                os.kill(running.worker_pids[0], signal.SIGKILL)
                time.sleep(0.01 * (round_number % 4))
            started = descendants(running.process.pid) | marked(tag)
            stop_signal = signal.SIGTERM if round_number % 2 == 0 else signal.SIGINT
            began = time.monotonic()
            # Then again and again, as an impatient Ctrl-C does, or SIGTERM sent to make's process group (the stack
            # gets it, and make forwards its own): the stack has not been reaped, so its PID is still its own.
            for _ in range(SIGNALS):
                running.process.send_signal(stop_signal)
            if crash_after_signal:
                with contextlib.suppress(ProcessLookupError):  # it may have ended already
                    os.kill(running.worker_pids[1], signal.SIGKILL)
            # Whatever appears meanwhile (a replacement being started) is the stack's too; and once the stack has
            # ended, whatever still carries its mark.
            while time.monotonic() - began < STOP_WITHIN_SECONDS:
                if running.process.poll() is None:
                    started |= descendants(running.process.pid)
                elif not any(alive(pid) for pid in started | marked(tag)):
                    break
                time.sleep(0.01)
            took = time.monotonic() - began
            stops.append(took)
            survivors = sorted(pid for pid in started | marked(tag) | {running.process.pid} if alive(pid))
            if survivors:
                failures.append(f"round {round_number} ({stop_signal.name}): alive after {took:.1f} s: {survivors}")
            elif running.process.wait(timeout=1) != 0:
                failures.append(f"round {round_number}: exit code {running.process.returncode}")
        finally:
            for pid in sorted(started | marked(tag) | {running.process.pid}):
                if alive(pid):  # only what this round's stack started: never leave it behind
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                running.process.wait(timeout=10)
            answered_by = time.monotonic() + 10
            for call in calls:  # each got its answer, or its connection closed, when the stack went
                call.join(timeout=max(0.0, answered_by - time.monotonic()))

    report = {
        "rounds": len(stops),
        "stop_seconds": {
            "min": round(min(stops), 2),
            "median": round(statistics.median(stops), 2),
            "max": round(max(stops), 2),
        },
    }
    print(json.dumps(report))
    assert not failures, "\n".join(failures) + f"\n{report}"
    assert max(stops) < STOP_WITHIN_SECONDS, report
