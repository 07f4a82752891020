"""Run the Dots emulator alone until SIGINT or SIGTERM: `python -m local_stack.dots_emulator --port 8090`."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from local_stack.dots_emulator.emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Dots payout-link API emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--client-id", default=DEMO_CLIENT_ID)
    parser.add_argument("--api-key", default=DEMO_API_KEY)
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with DotsEmulator(args.client_id, args.api_key, port=args.port) as emulator:
        print(f"dots emulator listening on {emulator.base_url}", flush=True)
        stop_requested.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
