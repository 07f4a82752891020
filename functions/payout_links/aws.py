"""One boto3 client per AWS service per container, tuned to fail fast inside a 20-second function."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# DynamoDB and Secrets Manager answer in milliseconds. A stuck or throttling dependency must surface as a 503
# within the time the function keeps back to record a result (service.RESPONSE_RESERVE_SECONDS), not after
# boto3's 60-second defaults: one retry, after standard mode's jittered backoff of at most a second.
_CLIENT_CONFIG = Config(
    connect_timeout=1,
    read_timeout=1,
    retries={"mode": "standard", "max_attempts": 2},
    tcp_keepalive=True,
)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)
