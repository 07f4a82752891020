"""The embedded moto server's DynamoDB transactions (local_stack/core/moto_transactions.py): all or nothing, as in
DynamoDB, without copying whole tables, and safe beside concurrent writes. Driven over HTTP with boto3."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from local_stack.core.aws_resources import ensure_table
from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def table(aws_clients) -> Iterator[str]:
    """A table of its own, with a few thousand items: enough for a whole-table copy to take long enough for a
    concurrent write to land during it."""
    dynamodb, _ = aws_clients
    name = f"transactions-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, load_template(TEMPLATE_PATH), "LinkOwnersTable", name)
    for start in range(0, 3000, 25):
        items = [put(name, f"seed-{number}", "user:seed")["Put"]["Item"] for number in range(start, start + 25)]
        dynamodb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": item}} for item in items]})
    yield name
    dynamodb.delete_table(TableName=name)


def put(table: str, link_id: str, owner: str, condition: str | None = None) -> dict:
    operation = {"TableName": table, "Item": {"link_id": {"S": link_id}, "owner": {"S": owner}}}
    if condition:
        operation["ConditionExpression"] = condition
    return {"Put": operation}


def owner_of(dynamodb, table: str, link_id: str) -> str | None:
    item = dynamodb.get_item(TableName=table, Key={"link_id": {"S": link_id}}, ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None


def test_a_transaction_writes_all_of_its_items(aws_clients, table):
    dynamodb, _ = aws_clients
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    dynamodb.transact_write_items(TransactItems=[put(table, first, "user:a"), put(table, second, "user:b")])

    assert (owner_of(dynamodb, table, first), owner_of(dynamodb, table, second)) == ("user:a", "user:b")


def test_a_failed_transaction_leaves_every_item_as_it_was(aws_clients, table):
    dynamodb, _ = aws_clients
    existing, new, guarded = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    dynamodb.put_item(TableName=table, Item={"link_id": {"S": existing}, "owner": {"S": "user:before"}})
    dynamodb.put_item(TableName=table, Item={"link_id": {"S": guarded}, "owner": {"S": "user:guard"}})

    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                put(table, existing, "user:after"),
                put(table, new, "user:new"),
                put(table, guarded, "user:thief", condition="attribute_not_exists(link_id)"),
            ]
        )

    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert owner_of(dynamodb, table, existing) == "user:before"
    assert owner_of(dynamodb, table, new) is None
    assert owner_of(dynamodb, table, guarded) == "user:guard"


def test_transactions_and_plain_writes_side_by_side_all_land(aws_clients, table):
    """Unpatched, moto copies the whole table for each transaction, and a plain write during the copy makes it
    answer 500 ("dictionary changed size during iteration")."""
    dynamodb, _ = aws_clients
    written: list[str] = []
    errors: list[Exception] = []

    def transactions() -> None:
        for _ in range(40):
            ids = [str(uuid.uuid4()), str(uuid.uuid4())]
            try:
                dynamodb.transact_write_items(TransactItems=[put(table, link_id, "user:t") for link_id in ids])
                written.extend(ids)
            except Exception as exc:  # collected: the assertion below names them
                errors.append(exc)

    def plain_writes() -> None:
        for _ in range(80):
            link_id = str(uuid.uuid4())
            try:
                dynamodb.put_item(TableName=table, Item={"link_id": {"S": link_id}, "owner": {"S": "user:p"}})
                written.append(link_id)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for work in (transactions, transactions, plain_writes, plain_writes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(written) == 2 * 40 * 2 + 2 * 80
    assert all(owner_of(dynamodb, table, link_id) is not None for link_id in written[::20])


def test_the_backend_no_longer_copies_whole_tables():
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    table = Table.__new__(Table)  # the backend's copy only looks at the type
    nested = {"a": [1]}

    assert models.copy.deepcopy(table) is table
    copied = models.copy.deepcopy(nested)
    assert copied == nested and copied["a"] is not nested["a"]


def test_a_transaction_retried_with_its_client_token_is_applied_once(aws_clients, table):
    """What botocore does when a transaction's answer comes too late: the same call again, with the same
    ClientRequestToken. DynamoDB answers the retry with success and writes nothing twice; so does the local stack,
    instead of failing the retry's own condition against what the first attempt wrote."""
    dynamodb, _ = aws_clients
    link_id, token = str(uuid.uuid4()), str(uuid.uuid4())
    once = [put(table, link_id, "user:a", "attribute_not_exists(link_id)")]

    dynamodb.transact_write_items(TransactItems=once, ClientRequestToken=token)
    dynamodb.transact_write_items(TransactItems=once, ClientRequestToken=token)  # the retry: success, no write

    assert owner_of(dynamodb, table, link_id) == "user:a"
    with pytest.raises(ClientError) as refused:  # a new call (a new token) meets the condition
        dynamodb.transact_write_items(TransactItems=once, ClientRequestToken=str(uuid.uuid4()))
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    with pytest.raises(ClientError) as mismatched:  # the same token for other items
        dynamodb.transact_write_items(TransactItems=[put(table, link_id, "user:b")], ClientRequestToken=token)
    assert mismatched.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    assert owner_of(dynamodb, table, link_id) == "user:a"
