"""A backlog: a thousand intents left unknown by an upstream outage, settled once Dots recovers, a hundred a run
(SETTLE_MAX_RESENDS_PER_RUN), the oldest due first; a run that meets Dots' 429 stops sending and leaves the rest
due; and a run with nothing due costs two queries of the settle-queue index, however many records the table holds.

In-process against moto and the Dots emulator, with an idempotency table of the test's own. The outage is Dots
answering 500 after making each link, with one attempt per request (PAYOUT_API_MAX_ATTEMPTS=1): every create ends
unknown with its link made, and nobody retries."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from payout_links import store
from tests.support import new_key, token

pytestmark = pytest.mark.faults

PER_RUN = 100
CONCURRENCY = 4  # SETTLE_CONCURRENCY, the template's


@pytest.fixture
def settling(function, own_intent_table):
    function.set_env(
        SETTLE_AFTER_SECONDS="1",
        PAYOUT_API_MAX_ATTEMPTS="1",
        SETTLE_MAX_RESENDS_PER_RUN=str(PER_RUN),
        SETTLE_CONCURRENCY=str(CONCURRENCY),
    )
    return function


@pytest.fixture
def aws_calls(settling) -> list[tuple[str, Any]]:
    """The calls the function's own DynamoDB and Secrets Manager clients make (counted where they happen, as
    tests/integration/test_round_trips.py counts them), each with the ScannedCount of its answer."""
    from payout_links import aws

    calls: list[tuple[str, Any]] = []
    for service in ("dynamodb", "secretsmanager"):
        aws.client(service).meta.events.register(
            "after-call", lambda model, parsed, **_: calls.append((model.name, parsed.get("ScannedCount")))
        )
    return calls


def outage(function, upstream, callers: list[str], intents: int) -> None:
    """`intents` creates, spread over `callers`, each answered 502 with its key bound: Dots made every link."""
    upstream.inject({"status": 500, "after_create": True, "count": intents})
    for number in range(intents):
        answer = function.create(sub=callers[number % len(callers)])
        assert answer.status == 502 and answer.json()["key_state"] == "bound", answer.body
    assert upstream.stats()["links_created"] == intents
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS: what the settler waits for by design


def queue(aws_clients, table: str) -> dict[str, int]:
    """The settle queue's due partition, as the index has it: each record's id and due time."""
    dynamodb, _ = aws_clients
    found: dict[str, int] = {}
    query: dict[str, Any] = {
        "TableName": table,
        "IndexName": store.SETTLE_INDEX,
        "KeyConditionExpression": "settle_queue = :due",
        "ExpressionAttributeValues": {":due": {"S": store.DUE}},
        "ProjectionExpression": "id, settle_at",
    }
    while True:
        page = dynamodb.query(**query)
        found.update({item["id"]["S"]: int(item["settle_at"]["N"]) for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return found
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def listed(function, sub: str) -> set[str]:
    """Every link GET /payout-links lists for `sub`, page after page."""
    ids: set[str] = set()
    query = {"limit": "100"}
    while True:
        page = function.request("GET", "/payout-links", headers={"authorization": f"Bearer {token(sub)}"}, query=query)
        assert page.status == 200, page.body
        ids |= {item["id"] for item in page.json()["items"]}
        if page.json()["next_cursor"] is None:
            return ids
        query = {"limit": "100", "cursor": page.json()["next_cursor"]}


def assert_an_empty_run_costs_two_queries(function, upstream, aws_calls) -> None:
    """Nothing due: the run's one query of the due partition and its count of the stranded one, each reading nothing
    but the index's own items (ScannedCount 0: never a scan of the table); no secret, nothing sent."""
    aws_calls.clear()
    requests = upstream.stats()["requests"]
    report = function.settle()
    assert report["due"] == 0 and report["stranded"] == 0, report
    assert aws_calls == [("Query", 0), ("Query", 0)]
    assert upstream.stats()["requests"] == requests


def test_a_backlog_of_a_thousand_is_settled_a_hundred_a_run_oldest_first(
    settling, upstream, aws_calls, aws_clients, own_intent_table
):
    backlog = 1000
    callers = [f"backlog-{new_key()}" for _ in range(4)]
    assert_an_empty_run_costs_two_queries(settling, upstream, aws_calls)
    outage(settling, upstream, callers, backlog)
    due_at = queue(aws_clients, own_intent_table)
    assert len(due_at) == backlog

    runs = 0
    waiting = set(due_at)
    while waiting:
        runs += 1
        assert runs <= math.ceil(backlog / PER_RUN), f"{len(waiting)} intents still due after {runs - 1} runs"
        creates = upstream.stats()["creates"]
        report = settling.settle()
        sent = upstream.stats()["creates"] - creates
        expected = min(PER_RUN, len(waiting))
        assert report["due"] == report["resent"] == report["settled"] == sent == expected, report
        still = set(queue(aws_clients, own_intent_table))
        settled = waiting - still
        assert len(settled) == expected and still <= waiting
        if still:  # the oldest due first
            assert max(due_at[record] for record in settled) <= min(due_at[record] for record in still)
        waiting = still
    assert runs == math.ceil(backlog / PER_RUN)

    # Every link Dots holds is recorded with its owner: listed for exactly one caller, readable by it.
    links = {link["id"] for link in upstream.links()}
    assert len(links) == backlog and upstream.stats()["links_created"] == backlog
    by_caller = [listed(settling, sub) for sub in callers]
    assert [len(ids) for ids in by_caller] == [backlog // len(callers)] * len(callers)
    assert set().union(*by_caller) == links
    sample = sorted(by_caller[0])[0]
    read = settling.request("GET", f"/payout-links/{sample}", headers={"authorization": f"Bearer {token(callers[0])}"})
    assert read.status == 200

    # The table now holds a thousand completed records, none of them in the sparse index.
    assert_an_empty_run_costs_two_queries(settling, upstream, aws_calls)


def test_a_run_that_meets_a_429_stops_sending_and_leaves_the_rest_due(settling, upstream):
    """Dots answers the run's third resend 429: the run sends nothing more (the resends already under way, at most
    SETTLE_CONCURRENCY, finish), says it was halted, and the rest stay due for the next runs, which settle them
    all."""
    backlog = 20
    sub = f"backlog-{new_key()}"
    outage(settling, upstream, [sub], backlog)
    slow = {"delay_seconds": 1.5}  # the first resends are still at Dots when the 429 comes back
    upstream.inject(slow, slow, {"status": 429, "retry_after": "30"}, slow)
    creates = upstream.stats()["creates"]

    report = settling.settle()

    sent = upstream.stats()["creates"] - creates
    assert report["halted"] is True, report
    assert 3 <= sent <= CONCURRENCY, (sent, report)
    assert report["resent"] == sent and report["skipped"] == backlog - sent, report
    assert report["unknown"] == 1 and report["settled"] == sent - 1, report  # the 429 keeps its taken-over key bound

    settled = report["settled"]
    for _ in range(5):
        time.sleep(1.1)  # SETTLE_AFTER_SECONDS, and the 429's backoff (2 s) after two runs
        later = settling.settle()
        assert later["halted"] is False and later["unknown"] == 0, later
        settled += later["settled"]
        if settled == backlog:
            break
    assert settled == backlog
    assert listed(settling, sub) == {link["id"] for link in upstream.links()}
    assert upstream.stats()["links_created"] == backlog
