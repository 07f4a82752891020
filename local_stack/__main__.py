"""`make run`: the proxy on http://127.0.0.1:$PORT until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from local_stack.stack import LocalStack, StackConfig
from payout_links.budget import MIN_FUNCTION_TIMEOUT_SECONDS

# A stop takes about a second and a half at most (LocalStack.stop); past this, its last resort (stop_within).
STOP_DEADLINE_SECONDS = 4.0


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
    signals = wait_for_signals(signal.SIGINT, signal.SIGTERM)
    try:
        config = StackConfig.from_env(os.environ)
    except ValueError as exc:
        print(f"payout-link-proxy: {exc}", file=sys.stderr)
        return 2
    try:
        stack = LocalStack(config).start()  # a signal meanwhile is kept in the pipe: it stops the stack once started
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
        os.read(signals, 1)
    finally:
        stop_within(stack, STOP_DEADLINE_SECONDS)
        print("payout-link-proxy stopped", flush=True)
    return 0


def wait_for_signals(*signums: signal.Signals) -> int:
    """A pipe that each of `signums` writes a byte to: the read end, which the main thread waits on.

    No Python handler may take a lock (an Event's, a queue's): the handler runs in the main thread between two of its
    steps, and a signal that arrives while the main thread holds that very lock (a second Ctrl-C, SIGTERM sent to
    make's process group and forwarded by make, just as the first one is handled) would wait for itself forever.
    So the handlers do nothing, and Python's own C-level handler writes the signal's number to the pipe (no lock,
    nothing to wait for); the handlers only keep SIGINT from raising KeyboardInterrupt and SIGTERM from killing the
    process on the spot."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in signums:
        signal.signal(signum, lambda *_: None)
    return read_end


def stop_within(stack: LocalStack, seconds: float) -> None:
    """`stack.stop()`; should it overrun `seconds`, every process the stack started is killed and this one exits, so
    that a stop always ends, whatever hangs."""
    stopped = threading.Event()

    def overdue() -> None:
        if not stopped.wait(seconds):
            print(f"payout-link-proxy: not stopped after {seconds:g} s: killing what it started", file=sys.stderr)
            stack.kill_processes()
            os._exit(1)

    threading.Thread(target=overdue, name="stop-deadline", daemon=True).start()
    stack.stop()
    stopped.set()


if __name__ == "__main__":
    sys.exit(main())
