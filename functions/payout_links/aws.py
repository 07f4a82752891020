"""One boto3 client per AWS service per container, its timeouts and retry within the time budget (budget.py)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from payout_links.budget import TimeBudget
from payout_links.settings import get_settings


def _client_config(budget: TimeBudget) -> Config:
    """DynamoDB and Secrets Manager answer in milliseconds: a stuck or throttling dependency must surface as a 503
    within the budget's W (budget.py), not after boto3's 60-second defaults."""
    return Config(
        connect_timeout=budget.aws_connect_timeout,
        read_timeout=budget.aws_read_timeout,
        retries={"mode": "standard", "total_max_attempts": budget.aws_attempts},
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
    return _session().client(service, config=_client_config(get_settings().budget))


def error_code(error: Exception) -> str:
    """What a failed AWS call is logged as: the service's error code (`ResourceNotFoundException`), or botocore's
    exception class for a call that got no answer (`EndpointConnectionError`, `ReadTimeoutError`). Never the error's
    text, which can name the account, the role and the resource."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or type(error).__name__
    return type(error).__name__


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
