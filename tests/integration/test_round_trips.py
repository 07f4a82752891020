"""What one request costs in network round trips: counted where they happen (botocore's event hooks on the
function's own clients, the emulator's request and connection counters), for the floor's cases."""

from __future__ import annotations

import pytest

from tests.support import new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def counted(function, upstream):
    """Run the function's request, then return its round trips: DynamoDB and Secrets Manager calls, upstream
    requests and new upstream connections."""
    from payout_links import aws

    aws_calls: list[str] = []
    hooked: set[int] = set()

    def request(**create):
        for service in ("dynamodb", "secretsmanager"):
            client = aws.client(service)
            if id(client) not in hooked:  # a cold container builds new clients: hook each once
                client.meta.events.register("before-call", lambda model, **_: aws_calls.append(model.name))
                hooked.add(id(client))
        aws_calls.clear()
        before = upstream.stats()
        result = function.create(**create)
        after = upstream.stats()
        assert result.status == 201, result.body
        return {
            "dynamodb": sum(name in {"PutItem", "GetItem", "UpdateItem", "DeleteItem"} for name in aws_calls),
            "secretsmanager": aws_calls.count("GetSecretValue"),
            "upstream": after["requests"] - before["requests"],
            "new_connections": after["connections"] - before["connections"],
        }

    return request


def test_new_intent_on_a_cold_container(counted):
    assert counted() == {"dynamodb": 2, "secretsmanager": 1, "upstream": 1, "new_connections": 1}


def test_new_intent_on_a_warm_container(counted):
    counted()

    assert counted() == {"dynamodb": 2, "secretsmanager": 0, "upstream": 1, "new_connections": 0}


def test_replay_on_the_container_that_made_the_link(counted):
    key = new_key()
    counted(key=key)

    assert counted(key=key) == {"dynamodb": 0, "secretsmanager": 0, "upstream": 0, "new_connections": 0}


def test_replay_on_another_container(counted, function):
    key = new_key()
    counted(key=key)
    function.reset_container()

    # One conditional write, whose failure returns the stored record (ReturnValuesOnConditionCheckFailure).
    assert counted(key=key) == {"dynamodb": 1, "secretsmanager": 0, "upstream": 0, "new_connections": 0}
