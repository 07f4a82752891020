"""`python -m local_stack` (what `make run` runs) in a process of its own, ready once its banner says so.

For whoever drives a whole stack from outside: the tests' `stack` fixtures, and bench/load.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from local_stack.stack import ROOT

# The banner's last line: the stack listens once it is out.
READY_PREFIX = "Ctrl-C"


@dataclass(frozen=True)
class SpawnedStack:
    process: subprocess.Popen[str]
    url: str
    banner: str


class StackDidNotStart(Exception):
    def __init__(self, banner: str, log_path: Path) -> None:
        super().__init__(f"the local stack did not start; see {log_path}")
        self.banner = banner
        self.log_path = log_path


def without_aws_endpoint(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without any AWS endpoint: a stack given no endpoint starts its own (embedded moto)."""
    return {name: value for name, value in env.items() if not name.startswith("AWS_ENDPOINT_URL")}


def spawn_stack(env: Mapping[str, str], *, port: int, log_path: Path, timeout: float = 90) -> SpawnedStack:
    """`python -m local_stack` with `env` and PORT=`port`, its stderr written to `log_path`; returns once its banner
    says it listens. When it does not within `timeout` seconds (or its output ends first), the process is killed and
    `StackDidNotStart` carries what banner it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
        text=True,
    )
    assert process.stdout is not None
    banner = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith(READY_PREFIX):
            return SpawnedStack(process, f"http://127.0.0.1:{port}", "".join(banner))
    process.send_signal(signal.SIGKILL)
    process.wait()
    raise StackDidNotStart("".join(banner), log_path)
