"""The Dots credentials: the Basic header they make, and how the store reads, caches and re-reads the secret."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from payout_links.credentials import CredentialsStore, PayoutApiCredentials
from payout_links.problems import DependencyUnavailable
from tests.support import BUDGET, function_logs

pytestmark = pytest.mark.unit

SECRET_ID = "payout-link-proxy/dev/dots"


class FakeSecrets:
    """`get_secret_value` as Secrets Manager answers it; each call returns the next scripted value."""

    def __init__(self, *values: str | Exception) -> None:
        self.values = list(values)
        self.calls: list[dict[str, Any]] = []

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        value = self.values[min(len(self.calls), len(self.values)) - 1]
        if isinstance(value, Exception):
            raise value
        return {"Name": SECRET_ID, "SecretString": value}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def secret(client_id: str, api_key: str) -> str:
    return json.dumps({"client_id": client_id, "api_key": api_key})


def test_authorization_is_basic_base64_of_client_id_and_api_key() -> None:
    header = PayoutApiCredentials(client_id="pk_test_1", api_key="sk_test_2").authorization

    assert header == "Basic " + base64.b64encode(b"pk_test_1:sk_test_2").decode()


def test_the_secret_is_read_once_and_reused_until_it_ages() -> None:
    secrets, clock = FakeSecrets(secret("id-1", "key-1"), secret("id-1", "key-2")), Clock()
    store = CredentialsStore(secrets, SECRET_ID, max_age_seconds=300, aws_call_seconds=BUDGET.aws_call, clock=clock)

    assert store.get() == PayoutApiCredentials("id-1", "key-1")
    clock.now += 299
    assert store.get().api_key == "key-1"
    assert secrets.calls == [{"SecretId": SECRET_ID}]

    clock.now += 1
    assert store.get().api_key == "key-2"
    assert len(secrets.calls) == 2


def test_refresh_rereads_the_rotated_secret_at_once() -> None:
    secrets = FakeSecrets(secret("id-1", "key-1"), secret("id-1", "key-2"))
    store = CredentialsStore(secrets, SECRET_ID, max_age_seconds=300, aws_call_seconds=BUDGET.aws_call, clock=Clock())
    store.get()

    assert store.refresh().api_key == "key-2"
    assert store.get().api_key == "key-2"
    assert len(secrets.calls) == 2


def test_a_read_starts_only_if_its_worst_case_fits_before_the_deadline() -> None:
    secrets, clock = FakeSecrets(secret("id-1", "key-1"), secret("id-1", "key-2")), Clock()
    store = CredentialsStore(secrets, SECRET_ID, max_age_seconds=300, aws_call_seconds=BUDGET.aws_call, clock=clock)

    with pytest.raises(DependencyUnavailable) as caught:
        store.get(deadline=clock() + BUDGET.aws_call - 0.01)
    assert caught.value.status == 503 and secrets.calls == []  # it would have eaten the time kept to answer

    assert store.get(deadline=clock() + BUDGET.aws_call).api_key == "key-1"
    assert store.get(deadline=clock()).api_key == "key-1"  # a cached value needs no time
    with pytest.raises(DependencyUnavailable):
        store.refresh(deadline=clock() + 1.0)
    assert len(secrets.calls) == 1


@pytest.mark.parametrize(
    "failure",
    [
        ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetSecretValue"),
        ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "GetSecretValue"),
        EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com"),
    ],
    ids=["throttled", "missing", "unreachable"],
)
def test_an_unreadable_secret_is_a_503(failure: Exception) -> None:
    store = CredentialsStore(
        FakeSecrets(failure), SECRET_ID, max_age_seconds=300, aws_call_seconds=BUDGET.aws_call, clock=Clock()
    )

    with pytest.raises(DependencyUnavailable) as caught:
        store.get()

    assert caught.value.status == 503
    assert caught.value.headers() == {"Retry-After": "2"}


@pytest.mark.parametrize(
    "value",
    ["sk_half_pasted_key", json.dumps({"client_id": "id-1"}), json.dumps(["id-1", "sk_half_pasted_key"]), "null"],
    ids=["not JSON", "no api_key", "array", "null"],
)
def test_a_malformed_secret_is_a_503_that_never_shows_its_value(value: str) -> None:
    store = CredentialsStore(
        FakeSecrets(value), SECRET_ID, max_age_seconds=300, aws_call_seconds=BUDGET.aws_call, clock=Clock()
    )

    with function_logs() as logs, pytest.raises(DependencyUnavailable) as caught:
        store.get()

    assert "credentials" in logs.getvalue()  # the failure was logged...
    assert "sk_half_pasted_key" not in logs.getvalue() + json.dumps(caught.value.to_dict())  # ...without the value
