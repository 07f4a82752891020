"""What one request costs in network round trips: counted where they happen (botocore's event hooks on the
function's own clients, the emulator's request and connection counters), for the floor's cases and for reading,
canceling and listing links."""

from __future__ import annotations

import pytest

from tests.support import clear_of_window_end, new_key, payout_body, token

pytestmark = pytest.mark.integration

DYNAMODB_CALLS = {"PutItem", "GetItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "Query"}


@pytest.fixture
def counted(function, upstream):
    """Run one of the function's requests, then return its round trips: DynamoDB and Secrets Manager calls,
    upstream requests and new upstream connections."""
    from payout_links import aws

    aws_calls: list[str] = []
    hooked: list = []  # the clients themselves: a freed client's id() can be a new client's

    def request(send, expected: int = 201):
        for service in ("dynamodb", "secretsmanager"):
            client = aws.client(service)
            if not any(client is seen for seen in hooked):  # a cold container builds new clients: hook each once
                client.meta.events.register("before-call", lambda model, **_: aws_calls.append(model.name))
                hooked.append(client)
        aws_calls.clear()
        before = upstream.stats()
        result = send()
        after = upstream.stats()
        assert result.status == expected, result.body
        return {
            "dynamodb": sum(name in DYNAMODB_CALLS for name in aws_calls),
            "secretsmanager": aws_calls.count("GetSecretValue"),
            "upstream": after["requests"] - before["requests"],
            "new_connections": after["connections"] - before["connections"],
        }

    return request


def lifecycle(function, method: str, link_id: str):
    return lambda: function.request(method, f"/payout-links/{link_id}", headers={"authorization": f"Bearer {token()}"})


def test_new_intent_on_a_cold_container(counted, function):
    # The callers' limit overrides (one GetItem, then cached for LIMIT_OVERRIDES_MAX_AGE_SECONDS), the lock, and
    # the transaction that completes it.
    assert counted(function.create) == {"dynamodb": 3, "secretsmanager": 1, "upstream": 1, "new_connections": 1}


def test_new_intent_on_a_warm_container(counted, function):
    counted(function.create)

    # The lock (PutItem), then one transaction that completes the record and records the link's owner.
    assert counted(function.create) == {"dynamodb": 2, "secretsmanager": 0, "upstream": 1, "new_connections": 0}


# The callers' limits on (the session's tests run with them off): a caller may pay out 10,000 cents a day and make 5
# links an hour.
LIMITS_ON = {"CALLER_DAILY_AMOUNT_LIMIT_CENTS": "10000", "CALLER_HOURLY_LINK_LIMIT": "5"}


def test_new_intent_on_a_warm_container_with_limits_on(counted, function):
    function.set_env(**LIMITS_ON)
    sub = f"limited-{new_key()}"
    counted(lambda: function.create(sub=sub))

    # The lock is then a transaction that also reserves in the caller's day and hour counters: still one call; the
    # overrides were read by the cold create, and are not read again for a minute.
    assert counted(lambda: function.create(sub=sub)) == {
        "dynamodb": 2,
        "secretsmanager": 0,
        "upstream": 1,
        "new_connections": 0,
    }


@pytest.mark.parametrize(
    ("already", "amount"),
    [([3_000, 3_000, 3_000], 3_000), ([100] * 5, 100), ([], 10_001)],
    ids=["daily-amount-reached", "hourly-links-reached", "over-the-daily-amount-on-its-own"],
)
def test_a_create_refused_by_a_limit_costs_one_dynamodb_call_and_nothing_upstream(counted, function, already, amount):
    function.set_env(**LIMITS_ON)
    clear_of_window_end(30)  # the caller's counters stay those of one hour and one day
    sub = f"limited-{new_key()}"
    counted(lambda: function.create(sub=f"limited-{new_key()}"))  # a warm container: the overrides are read
    for earlier in already:
        counted(lambda earlier=earlier: function.create(payout_body(amount=earlier), sub=sub))

    # The lock's transaction, refused by its reserve's condition: no key taken, no secret read, Dots not asked.
    trips = counted(lambda: function.create(payout_body(amount=amount), sub=sub), expected=429)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 0, "new_connections": 0}


def test_replay_on_the_container_that_made_the_link(counted, function):
    key = new_key()
    counted(lambda: function.create(key=key))

    assert counted(lambda: function.create(key=key)) == {
        "dynamodb": 0,
        "secretsmanager": 0,
        "upstream": 0,
        "new_connections": 0,
    }


def test_replay_on_another_container(counted, function):
    key = new_key()
    counted(lambda: function.create(key=key))
    function.reset_container()

    # The new container's read of the limit overrides, then one conditional write, whose failure returns the stored
    # record (ReturnValuesOnConditionCheckFailure).
    assert counted(lambda: function.create(key=key)) == {
        "dynamodb": 2,
        "secretsmanager": 0,
        "upstream": 0,
        "new_connections": 0,
    }


def test_read_on_a_warm_container(counted, function):
    link_id = function.create().json()["id"]

    trips = counted(lifecycle(function, "GET", link_id), expected=200)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 1, "new_connections": 0}


def test_cancel_on_a_warm_container(counted, function):
    link_id = function.create().json()["id"]

    trips = counted(lifecycle(function, "DELETE", link_id), expected=200)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 1, "new_connections": 0}


def test_cancel_again_reads_the_link_once_more(counted, function):
    link_id = function.create().json()["id"]
    counted(lifecycle(function, "DELETE", link_id), expected=200)

    trips = counted(lifecycle(function, "DELETE", link_id), expected=200)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 2, "new_connections": 0}


def test_cancel_of_a_claimed_link(counted, function, upstream):
    link_id = function.create().json()["id"]
    upstream.set_status(link_id, "claimed")

    trips = counted(lifecycle(function, "DELETE", link_id), expected=409)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 2, "new_connections": 0}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_strangers_request_costs_one_read_and_nothing_upstream(counted, function, method):
    link_id = function.create().json()["id"]
    stranger = {"authorization": f"Bearer {token('user-2')}"}

    trips = counted(lambda: function.request(method, f"/payout-links/{link_id}", headers=stranger), expected=404)

    assert trips == {"dynamodb": 1, "secretsmanager": 0, "upstream": 0, "new_connections": 0}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_malformed_id_costs_nothing(counted, function, method):
    function.create()

    trips = counted(lifecycle(function, method, "not a link"), expected=404)

    assert trips == {"dynamodb": 0, "secretsmanager": 0, "upstream": 0, "new_connections": 0}


def listing(function, sub: str, **query: str):
    return lambda: function.request(
        "GET", "/payout-links", headers={"authorization": f"Bearer {token(sub)}"}, query=query
    )


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_each_page_of_a_list_is_one_query_and_nothing_else(counted, function, cold):
    sub = f"pages-{new_key()}"
    for _ in range(3):
        function.create(sub=sub)
    cursor = listing(function, sub, limit="2")().json()["next_cursor"]
    if cold:
        function.reset_container()

    first = counted(listing(function, sub, limit="2"), expected=200)
    second = counted(listing(function, sub, limit="2", cursor=cursor), expected=200)

    # No credentials are read either: the upstream is never asked.
    assert first == second == {"dynamodb": 1, "secretsmanager": 0, "upstream": 0, "new_connections": 0}


def test_a_refused_cursor_costs_nothing(counted, function):
    sub = f"pages-{new_key()}"

    trips = counted(listing(function, sub, cursor="bm90LWEtY3Vyc29y"), expected=400)

    assert trips == {"dynamodb": 0, "secretsmanager": 0, "upstream": 0, "new_connections": 0}
