"""One boto3 client per AWS service per container, tuned to fail fast inside a 20-second function."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# A stuck dependency must surface as a 503 well before the function's deadline, not after boto3's 60-second
# defaults; "standard" retries back off with jitter on throttling.
_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 3},
    tcp_keepalive=True,
)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)
