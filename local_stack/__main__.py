"""`make run`: the proxy on http://127.0.0.1:$PORT until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from local_stack.stack import LocalStack, StackConfig
from payout_links.budget import MIN_FUNCTION_TIMEOUT_SECONDS


def schedule_lines(schedules: dict[str, Any]) -> list[str]:
    """One banner line per scheduled function: its events and how often each runs here."""
    lines = []
    for function, described in schedules.items():
        events = []
        for event, schedule in described["events"].items():
            period = schedule["period_seconds"]
            when = f"every {period:g} s" if period else "on demand only"
            events.append(f"{event} {when} (template: {schedule['expression']})")
        lines.append(f"  scheduled: {function} {'; '.join(events)}\n")
    return lines


def timeout_line(seconds: float) -> str:
    """The API function's timeout, and one clear warning when its time budget cannot work at the worst case."""
    line = f"  function timeout: {seconds:g} s\n"
    if seconds < MIN_FUNCTION_TIMEOUT_SECONDS:
        line += (
            f"  WARNING: a function timeout below {MIN_FUNCTION_TIMEOUT_SECONDS} s leaves Dots too little time when "
            "AWS calls are slow; the template refuses it (FunctionTimeoutSeconds)\n"
        )
    return line


def issuer_line(stack: LocalStack) -> str:
    """The banner's line for the JWT issuer the gateway trusts, and the audiences it accepts."""
    audiences = ", ".join(stack.config.jwt_audiences)
    if stack.local_issuer is None:
        return f"  JWT issuer: {stack.jwt_issuer} (JWT_ISSUER), audience {audiences}\n"
    return (
        f"  JWT issuer: {stack.jwt_issuer} (local; a token: make token SUB=demo-user SCOPE=payouts:write),"
        f" audience {audiences}\n"
    )


def main() -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        config = StackConfig.from_env(os.environ)
    except ValueError as exc:
        print(f"payout-link-proxy: {exc}", file=sys.stderr)
        return 2
    try:
        stack = LocalStack(config).start()
    except ValueError as exc:  # what the configuration asks for cannot be had (a port in use, a cron schedule)
        print(f"payout-link-proxy: {exc}", file=sys.stderr)
        return 2
    try:
        print(
            f"payout-link-proxy listening on {stack.url}\n"
            f"{timeout_line(stack.function_timeout_seconds)}"
            f"  upstream: {stack.payout_api_base_url}\n"
            f"{issuer_line(stack)}"
            f"  AWS endpoint: {stack.endpoint_url}\n"
            f"  execution environments: {', '.join(map(str, stack.worker_pids))} (PIDs)\n"
            f"{''.join(schedule_lines(stack.schedules))}"
            f"  control: {stack.control_url} (POST /schedules/{{function}}/run runs one now)\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stopping.wait()
    finally:
        stack.stop()
        print("payout-link-proxy stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
