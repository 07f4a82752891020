"""The AWS fault proxy's stalls, driven by a real boto3 DynamoDB client against the session's moto server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.faults.aws_fault_proxy import THROTTLED, AwsFaultProxy

pytestmark = pytest.mark.faults

GET_ITEM = "DynamoDB_20120810.GetItem"
PUT_ITEM = "DynamoDB_20120810.PutItem"
READ_TIMEOUT_SECONDS = 0.5
STALL_SECONDS = 1.5


@pytest.fixture
def proxy(aws_endpoint: str) -> Iterator[AwsFaultProxy]:
    running = AwsFaultProxy(aws_endpoint)
    yield running
    running.stop()


@pytest.fixture
def impatient_dynamodb(proxy: AwsFaultProxy) -> Any:
    """A client through the proxy that waits 0.5 s for an answer and never retries."""
    # botocore's `max_attempts` counts retries only (1 would mean two calls); `total_max_attempts` counts calls.
    config = Config(
        connect_timeout=1, read_timeout=READ_TIMEOUT_SECONDS, retries={"mode": "standard", "total_max_attempts": 1}
    )
    return boto3.session.Session(region_name="us-east-1").client("dynamodb", endpoint_url=proxy.endpoint, config=config)


def item_key() -> dict[str, Any]:
    return {"id": {"S": f"proxy-test-{uuid.uuid4()}"}}


def test_stall_before_forwarding_times_out_the_client(
    aws_resources: dict[str, str], proxy: AwsFaultProxy, impatient_dynamodb: Any
) -> None:
    proxy.stall(GET_ITEM, seconds=STALL_SECONDS, count=1)

    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        impatient_dynamodb.get_item(TableName=aws_resources["table"], Key=item_key())
    gave_up_after = time.monotonic() - started
    # The rule is used up: the next call goes straight through.
    answer = impatient_dynamodb.get_item(TableName=aws_resources["table"], Key=item_key())

    assert READ_TIMEOUT_SECONDS <= gave_up_after < STALL_SECONDS
    assert "Item" not in answer
    assert proxy.calls == [GET_ITEM, GET_ITEM]


def test_stall_after_forwarding_lands_the_write_but_times_out_the_client(
    aws_resources: dict[str, str],
    aws_clients: tuple[Any, Any],
    proxy: AwsFaultProxy,
    impatient_dynamodb: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    proxy.stall(PUT_ITEM, seconds=STALL_SECONDS, forward=True)
    key = item_key()

    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        impatient_dynamodb.put_item(TableName=aws_resources["table"], Item={**key, "state": {"S": "written"}})

    direct_dynamodb, _ = aws_clients  # straight to moto, not through the proxy
    stored = direct_dynamodb.get_item(TableName=aws_resources["table"], Key=key, ConsistentRead=True)
    assert stored["Item"]["state"] == {"S": "written"}
    # Once the held answer meets the closed connection, the proxy stays quiet about it.
    assert proxy.wait_idle(timeout=STALL_SECONDS + 5)
    assert time.monotonic() - started >= STALL_SECONDS  # the held answer was written (or found no one) by now
    assert "Traceback" not in capfd.readouterr().err


def test_wait_idle_returns_once_a_stalled_call_has_landed(
    aws_resources: dict[str, str],
    aws_clients: tuple[Any, Any],
    proxy: AwsFaultProxy,
    impatient_dynamodb: Any,
) -> None:
    proxy.stall(PUT_ITEM, seconds=STALL_SECONDS, count=1)  # held, then forwarded: it lands after the client gave up
    key = item_key()
    direct_dynamodb, _ = aws_clients

    with pytest.raises(ReadTimeoutError):
        impatient_dynamodb.put_item(TableName=aws_resources["table"], Item={**key, "state": {"S": "late"}})
    assert not proxy.wait_idle(timeout=0)  # still held
    assert "Item" not in direct_dynamodb.get_item(TableName=aws_resources["table"], Key=key, ConsistentRead=True)

    assert proxy.wait_idle(timeout=STALL_SECONDS + 5)
    stored = direct_dynamodb.get_item(TableName=aws_resources["table"], Key=key, ConsistentRead=True)
    assert stored["Item"]["state"] == {"S": "late"}


def test_fail_answers_with_the_aws_error_then_forwards(
    aws_resources: dict[str, str], proxy: AwsFaultProxy, impatient_dynamodb: Any
) -> None:
    proxy.fail(GET_ITEM, count=1)

    with pytest.raises(ClientError) as failed:
        impatient_dynamodb.get_item(TableName=aws_resources["table"], Key=item_key())
    answer = impatient_dynamodb.get_item(TableName=aws_resources["table"], Key=item_key())

    error = failed.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == THROTTLED
    assert "Item" not in answer


def test_heal_clears_stalls(aws_resources: dict[str, str], proxy: AwsFaultProxy, impatient_dynamodb: Any) -> None:
    proxy.stall(GET_ITEM, seconds=STALL_SECONDS)
    proxy.heal()

    answer = impatient_dynamodb.get_item(TableName=aws_resources["table"], Key=item_key())

    assert "Item" not in answer
