"""How the local stack stops (local_stack/__main__.py): signals reach the main thread through a pipe, never through a
handler that takes a lock. The whole stack, stopped under traffic, is tests/e2e/test_stack_stops.py's."""

from __future__ import annotations

import os
import select
import signal

import pytest

from local_stack.__main__ import wait_for_signals

pytestmark = pytest.mark.unit


def test_signals_coming_again_and_again_wake_the_main_thread_and_never_block_it() -> None:
    """The handler that used to set an Event took the Event's lock: a second signal that came while the main thread
    held that lock (just woken by the first) waited for itself forever. Through the pipe, a burst of signals is a
    burst of bytes. SIGUSR1 and SIGUSR2 stand in for SIGINT and SIGTERM, which are pytest's."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGUSR1, signal.SIGUSR2)}
    signals = wait_for_signals(signal.SIGUSR1, signal.SIGUSR2)
    try:
        for number in range(500):
            os.kill(os.getpid(), signal.SIGUSR1 if number % 2 else signal.SIGUSR2)
        ready, _, _ = select.select([signals], [], [], 5)
        assert ready and os.read(signals, 1)[0] in (signal.SIGUSR1, signal.SIGUSR2)
    finally:
        os.close(signal.set_wakeup_fd(-1))  # the pipe's write end
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        os.close(signals)
