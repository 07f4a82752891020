"""`make run`: the proxy on http://127.0.0.1:$PORT until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading

from local_stack.stack import LocalStack, StackConfig


def main() -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        config = StackConfig.from_env(os.environ)
    except ValueError as exc:
        print(f"payout-link-proxy: {exc}", file=sys.stderr)
        return 2
    stack = LocalStack(config).start()
    try:
        print(
            f"payout-link-proxy listening on {stack.url}\n"
            f"  upstream: {stack.payout_api_base_url}\n"
            f"  AWS endpoint: {stack.endpoint_url}\n"
            f"  execution environments: {', '.join(map(str, stack.worker_pids))} (PIDs)\n"
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
