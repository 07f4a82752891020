"""A pool of simulated Lambda execution environments, each a `lambda_worker` process.

Like Lambda, each environment serves one request at a time and is killed when it overruns its timeout; a
killed or crashed environment is replaced by a fresh (cold) one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

# Time a fresh process may take to import the handler before it counts as broken.
START_TIMEOUT_SECONDS = 60
# When the environments are stopped, how long one still busy with an event may take to finish it before it is
# killed: every environment of a pool shares this one grace, so stopping never takes longer, however many are busy.
STOP_GRACE_SECONDS = 1.0


def execution_environment(variables: Mapping[str, str], *, function_name: str, memory_mb: int) -> dict[str, str]:
    """What a function's process gets as its environment: ours, the function's variables over it, and the variables
    Lambda sets (its name and memory)."""
    return {
        **os.environ,
        **variables,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
    }


class InvocationFailed(Exception):
    """The function raised, crashed or timed out; API Gateway answers such an invocation with a 500."""


class Stopping(InvocationFailed):
    """A process was to start after its `ChildProcesses` closed: it never started."""


class ChildProcesses:
    """Every process a stack starts, each through `popen`, so that stopping ends them all whoever started them.

    `close` (the first thing `stop` does) makes starting impossible: a process is started and recorded under one
    lock, and once closed `popen` raises `Stopping` instead, so that a replacement started for a killed environment
    while the stack stops is never left running. `stop` then ends every process within one grace, whatever each is
    doing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[str]] = []
        self._closed = False

    def popen(self, args: list[str], **options: Any) -> subprocess.Popen[str]:
        """`subprocess.Popen(args, **options)`, recorded before anyone else can stop the stack; `Stopping` once
        closed."""
        with self._lock:
            if self._closed:
                raise Stopping("the stack is stopping: no process starts any more")
            process: subprocess.Popen[str] = subprocess.Popen(args, **options)
            self._processes = [*(known for known in self._processes if known.returncode is None), process]
            return process

    @property
    def pids(self) -> list[int]:
        """The processes started and not yet seen to end."""
        with self._lock:
            return [process.pid for process in self._processes if process.returncode is None]

    def close(self) -> None:
        """No process starts any more."""
        with self._lock:
            self._closed = True

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Close, then end every process: each one's input is closed (an idle function process ends at once, a busy
        one once its event is done), and what still runs when `grace` seconds are over is killed."""
        with self._lock:
            self._closed = True
            processes = list(self._processes)
        for process in processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError, ValueError):  # already closed, or its end of the pipe is gone
                    process.stdin.close()
        deadline = time.monotonic() + grace
        for process in processes:
            _wait_or_kill(process, deadline)

    def kill(self) -> None:
        """Kill every process now, waiting for nothing and taking no lock: the last resort of a stop that overran."""
        for process in list(self._processes):
            if process.returncode is None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGKILL)


def _wait_or_kill(process: subprocess.Popen[str], deadline: float) -> None:
    """Wait for `process` to end until `deadline` (a `time.monotonic()` time), then kill it."""
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


class LambdaWorker:
    def __init__(
        self,
        handler: str,
        env: Mapping[str, str],
        timeout_seconds: float,
        *,
        code_dir: Path | None = None,
        log: IO[str] | None = None,
        wait: bool = True,
        processes: ChildProcesses | None = None,
    ) -> None:
        """A process that imports `handler` ("module.function") from `code_dir` (first on its path, as Lambda's
        /var/task; by default our working directory) with `env` as its whole environment. `log` receives the
        function's logs (its stdout and stderr); by default they go to our stderr. Returns once it is ready, or
        at once without `wait` (then `wait_ready()` before the first `invoke`). Started through `processes` when
        given (`Stopping` when that is closed)."""
        self.timeout_seconds = timeout_seconds
        spawn = processes.popen if processes is not None else subprocess.Popen
        self.process = spawn(
            [sys.executable, "-m", "local_stack.core.lambda_worker", handler, str(timeout_seconds)],
            cwd=code_dir,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops the workers itself
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the handler's import; `InvocationFailed` (and the process killed) if it fails or hangs."""
        self._read_line(START_TIMEOUT_SECONDS)  # {"ready": true}

    @property
    def pid(self) -> int:
        return self.process.pid

    def invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"event": event, "request_id": request_id}) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or its input closed by stop()
            raise InvocationFailed("the execution environment is gone") from None
        # A little grace over the function timeout: the worker's own clock started when it read the event.
        reply = self._read_line(self.timeout_seconds + 1.0)
        if "error" in reply:
            raise InvocationFailed(f"the function raised {reply['error']}")
        return reply["response"]

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise InvocationFailed("the execution environment timed out or crashed")
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close_input(self) -> None:
        """End of input: an idle worker's loop ends at once, a busy one's after its current event."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):  # its end of the pipe is already gone
            self.process.stdin.close()

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the process to end until `deadline` (a `time.monotonic()` time), then kill it."""
        _wait_or_kill(self.process, deadline)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End the process: at once when idle; when busy, it has `grace` seconds to finish its event."""
        self.close_input()
        self.wait_or_kill(time.monotonic() + grace)


class NotStarted(Exception):
    """No environment became free in time: the event was never handed to the function."""


class WorkerPool:
    """`size` environments of one function (as `LambdaWorker` takes it), started in parallel; `invoke` borrows an
    idle one and waits while all are busy."""

    def __init__(
        self,
        size: int,
        handler: str,
        env: Mapping[str, str],
        timeout_seconds: float,
        *,
        code_dir: Path | None = None,
        log: IO[str] | None = None,
        processes: ChildProcesses | None = None,
    ) -> None:
        self._handler = handler
        self._env = dict(env)
        self._timeout = timeout_seconds
        self._code_dir = code_dir
        self._log = log
        self._processes = processes
        self._idle: queue.Queue[LambdaWorker] = queue.Queue()
        self._all: list[LambdaWorker] = []  # started or starting, until stopped
        self._lock = threading.Lock()
        self._stopped = False
        threads = [threading.Thread(target=self._add_worker) for _ in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._idle.qsize() != size:
            self.stop()
            raise RuntimeError("the function could not start; see the errors above")

    def _add_worker(self) -> None:
        # Started and known under one lock, so that stop() ends a starting one too, and none starts after it.
        with self._lock:
            if self._stopped:
                return
            try:
                worker = LambdaWorker(
                    self._handler,
                    self._env,
                    self._timeout,
                    code_dir=self._code_dir,
                    log=self._log,
                    wait=False,
                    processes=self._processes,
                )
            except Stopping:
                return
            self._all.append(worker)
        try:
            worker.wait_ready()
        except InvocationFailed:
            self._forget(worker)
            return
        self._idle.put(worker)

    def _forget(self, worker: LambdaWorker) -> bool:
        """Drop a dead worker; True when a replacement should start (the pool is not stopped)."""
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            return not self._stopped

    def invoke(self, event: dict[str, Any], request_id: str, *, start_by: float | None = None) -> dict[str, Any]:
        """Run the event on an idle environment, waiting for one while all are busy, but not past `start_by` (a
        `time.monotonic()` time): `NotStarted` then, and the function never sees the event."""
        try:
            worker = self._idle.get(timeout=None if start_by is None else max(0.0, start_by - time.monotonic()))
        except queue.Empty:
            raise NotStarted(request_id) from None
        try:
            return worker.invoke(event, request_id)
        finally:
            if worker.alive():
                self._idle.put(worker)
            elif self._forget(worker):
                threading.Thread(target=self._add_worker, daemon=True).start()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._all]

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End every environment, starting ones too, within `grace` seconds whatever they are doing: idle ones at
        once, busy ones when their event is done or the grace is over (killed then). No replacement starts."""
        with self._lock:
            workers, self._all = self._all, []
            self._stopped = True
        stop_workers(workers, grace)


def stop_workers(workers: list[LambdaWorker], grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop `workers` together: all their inputs closed first, then one shared `grace` for all of them."""
    for worker in workers:
        worker.close_input()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.wait_or_kill(deadline)
