"""How the local stack ends what it started (`ChildProcesses` in local_stack/core/workers.py, and
local_stack/__main__.py), with plain Python processes standing in for the function's: nothing starts once stopping
has begun, and a stop ends every process within its grace, whatever each is doing. Signals reach the main thread
through a pipe, never through a handler that takes a lock. The whole stack, stopped under traffic, is
tests/e2e/test_stack_stops.py's."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from local_stack.__main__ import wait_for_signals
from local_stack.core.workers import ChildProcesses, InvocationFailed, LambdaWorker, Stopping

pytestmark = pytest.mark.unit

# Waits for its input to end, as an idle function process does.
IDLE = [sys.executable, "-c", "import sys; sys.stdin.read()"]
# Ignores its input and SIGTERM, as a function stuck in a call would.
STUCK = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]


@pytest.fixture
def processes() -> Iterator[ChildProcesses]:
    started = ChildProcesses()
    yield started
    started.stop(grace=0)


def test_once_closed_no_process_starts(processes: ChildProcesses) -> None:
    processes.close()

    with pytest.raises(Stopping):
        processes.popen(IDLE, stdin=subprocess.PIPE)
    with pytest.raises(InvocationFailed):  # a function's environment asked for now: its invocation fails
        LambdaWorker("handler.run", {}, 1.0, wait=False, processes=processes)
    assert processes.pids == []


def test_a_stop_ends_idle_processes_at_once_and_kills_the_rest_when_the_grace_is_over(
    processes: ChildProcesses,
) -> None:
    idle = [processes.popen(IDLE, stdin=subprocess.PIPE, text=True) for _ in range(2)]
    stuck = [processes.popen(STUCK, stdin=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.3)  # each has started its interpreter

    began = time.monotonic()
    processes.stop(grace=0.5)
    took = time.monotonic() - began

    assert 0.5 <= took < 1.5, took  # one grace for all of them, not one each
    assert [process.returncode for process in idle] == [0, 0]  # their input ended: they finished
    assert [process.returncode for process in stuck] == [-signal.SIGKILL] * 2
    with pytest.raises(Stopping):  # and nothing starts after
        processes.popen(IDLE, stdin=subprocess.PIPE)


def test_kill_ends_every_process_without_waiting(processes: ChildProcesses) -> None:
    stuck = [processes.popen(STUCK, stdin=subprocess.PIPE, text=True) for _ in range(2)]

    processes.kill()

    assert [process.wait(timeout=5) for process in stuck] == [-signal.SIGKILL] * 2


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
