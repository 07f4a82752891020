"""One boto3 client per AWS service per container, tuned to fail fast inside a 20-second function."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# DynamoDB and Secrets Manager answer in milliseconds. A stuck or throttling dependency must surface as a 503
# within the time the function keeps back to record a result, not after boto3's 60-second defaults.
CONNECT_TIMEOUT_SECONDS = 0.5
READ_TIMEOUT_SECONDS = 1.0
TOTAL_ATTEMPTS = 2  # botocore counts the first call: one retry
# Standard mode sleeps rand(0, 1) * base before the first retry: base is 1 s for throttling errors, 25-50 ms
# for the others. (An `x-amz-retry-after` header could stretch that by up to 5 s; AWS is not known to send one.)
MAX_RETRY_DELAY_SECONDS = 1.0
# The longest one call can take, retry included: what a deadline must leave for a call that has to happen.
WORST_CASE_CALL_SECONDS = TOTAL_ATTEMPTS * (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) + MAX_RETRY_DELAY_SECONDS

_CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    retries={"mode": "standard", "total_max_attempts": TOTAL_ATTEMPTS},
    tcp_keepalive=True,
)


# The services the function calls, each through one client per container (see snapstart.py).
CLIENTS_IN_USE = ("dynamodb", "secretsmanager")


@cache
def _session() -> boto3.session.Session:
    # One session for every client: its loader and endpoint resolver read botocore's data files once, not once
    # per client (about 80 ms of a cold start for the two clients).
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    return _session().client(service, config=_CLIENT_CONFIG)


def renewed_credentials() -> Any:
    """The function's AWS credentials, resolved again (from the environment, or Lambda's credentials endpoint)
    rather than those the session resolved when the clients were built."""
    botocore_session = _session()._session
    botocore_session._credentials = None
    return botocore_session.get_credentials()


def reset() -> None:
    """Forget the session and its clients, as a new execution environment starts without them (tests)."""
    client.cache_clear()
    _session.cache_clear()
