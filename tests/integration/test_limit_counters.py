"""Each caller's limits against DynamoDB (the moto server, the idempotency table made from the template): the
reserve entries pass within the limits and fail the write that would overshoot, concurrent creates never
overshoot, a give-back restores room, a refusal names its limit and the time left in its window, and an override
set by the operator command applies once the container's copy is older than its max age."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.core.aws_resources import clients
from payout_links.limits import OVERRIDES_ID, CallerLimit, CallerLimits, Reservation, caller_hash
from payout_links.problems import Limit
from scripts import caller_limits as command

pytestmark = pytest.mark.integration

# 2031-03-14T02:59:30Z: thirty seconds before the hour ends, 21 h 0 min 30 s before the day does.
LATE_IN_THE_HOUR = datetime(2031, 3, 14, 2, 59, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = LATE_IN_THE_HOUR) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(aws_resources) -> str:
    return aws_resources["table"]


@pytest.fixture
def dynamodb(aws_clients) -> Any:
    return aws_clients[0]


def new_caller() -> str:
    return f"user:{uuid.uuid4()}"


def limits(
    dynamodb: Any,
    table: str,
    *,
    daily: int = 10_000,
    hourly: int = 5,
    clock: Callable[[], float] | None = None,
    max_age: float = 60,
) -> CallerLimits:
    return CallerLimits(
        dynamodb_client=dynamodb,
        table_name=table,
        daily_amount_cents=daily,
        hourly_links=hourly,
        overrides_max_age_seconds=max_age,
        clock=clock or Clock(),
    )


def lock(table: str) -> dict[str, Any]:
    """Stands in for the intent's lock: a Put of an item of its own, in the same transaction as the reserve."""
    return {"Put": {"TableName": table, "Item": {"id": {"S": f"test-lock#{uuid.uuid4()}"}}}}


def transact(dynamodb: Any, entries: list[dict[str, Any]]) -> list[bool] | None:
    """Run the transaction; None when it landed, else whether each entry failed its condition."""
    try:
        dynamodb.transact_write_items(TransactItems=entries)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        return [reason.get("Code") == "ConditionalCheckFailed" for reason in exc.response["CancellationReasons"]]
    return None


def reserve(dynamodb: Any, table: str, caller_limits: CallerLimits, caller: str, amount: int):
    """reserve()'s entries after a lock, as the store sends them: (reservation, None or each entry's failure)."""
    reservation, entries = caller_limits.reserve(caller, amount)
    failed = transact(dynamodb, [lock(table), *entries])
    return reservation, None if failed is None else failed[1:]


def totals(dynamodb: Any, table: str, reservation: Reservation) -> tuple[int | None, int | None]:
    """(cents reserved in the day's counter, links in the hour's); None for a counter that does not exist."""

    def total(counter: str | None, attribute: str) -> int | None:
        if counter is None:
            return None
        item = dynamodb.get_item(TableName=table, Key={"id": {"S": counter}}, ConsistentRead=True).get("Item")
        return int(item[attribute]["N"]) if item else None

    return total(reservation.day_counter, "amount"), total(reservation.hour_counter, "links")


def test_a_reserve_within_the_limits_lands_in_the_callers_counters(dynamodb, table):
    caller = new_caller()

    reservation, failed = reserve(dynamodb, table, limits(dynamodb, table), caller, 3_000)

    assert failed is None
    assert totals(dynamodb, table, reservation) == (3_000, 1)
    assert reservation.day_counter == f"limits#{caller_hash(caller)}#day#2031-03-14"
    assert reservation.hour_counter == f"limits#{caller_hash(caller)}#hour#2031-03-14T02"
    # Each counter expires a day after its window ends.
    day = dynamodb.get_item(TableName=table, Key={"id": {"S": reservation.day_counter}})["Item"]
    hour = dynamodb.get_item(TableName=table, Key={"id": {"S": reservation.hour_counter}})["Item"]
    assert int(day["expiration"]["N"]) == datetime(2031, 3, 16, tzinfo=UTC).timestamp()
    assert int(hour["expiration"]["N"]) == datetime(2031, 3, 15, 3, tzinfo=UTC).timestamp()


def test_the_write_that_would_overshoot_the_daily_amount_fails_its_condition_and_changes_nothing(dynamodb, table):
    caller, caller_limits = new_caller(), limits(dynamodb, table, daily=10_000)
    first, _ = reserve(dynamodb, table, caller_limits, caller, 6_000)

    _, failed = reserve(dynamodb, table, caller_limits, caller, 4_001)

    assert failed == [True, False]  # the day's entry refused, the hour's had room
    assert totals(dynamodb, table, first) == (6_000, 1)  # all or nothing: not even the link was counted
    _, exactly_up_to_the_limit = reserve(dynamodb, table, caller_limits, caller, 4_000)
    assert exactly_up_to_the_limit is None
    assert totals(dynamodb, table, first) == (10_000, 2)


def test_the_link_over_the_hourly_limit_fails_its_condition(dynamodb, table):
    caller, caller_limits = new_caller(), limits(dynamodb, table, hourly=2)
    for _ in range(2):
        assert reserve(dynamodb, table, caller_limits, caller, 100)[1] is None

    reservation, failed = reserve(dynamodb, table, caller_limits, caller, 100)

    assert failed == [False, True]
    assert totals(dynamodb, table, reservation) == (200, 2)


def test_an_amount_over_the_daily_limit_on_its_own_is_never_reserved(dynamodb, table):
    caller_limits = limits(dynamodb, table, daily=10_000)

    reservation, failed = reserve(dynamodb, table, caller_limits, new_caller(), 10_001)

    assert failed == [True, False]  # even against a counter that does not exist yet
    assert totals(dynamodb, table, reservation) == (None, None)


def test_concurrent_creates_never_overshoot_the_limit(dynamodb, table, aws_endpoint):
    """20 creates of 3,000 cents at once against 10,000: exactly three land, each with its lock, and the others
    leave no trace, not even their lock."""
    caller, caller_limits = new_caller(), limits(dynamodb, table, daily=10_000, hourly=100)
    start = threading.Barrier(20)
    landed: list[str] = []
    refused: list[list[bool]] = []

    def create() -> None:
        client = clients(aws_endpoint, "us-east-1")[0]  # one client per container
        the_lock = lock(table)
        _, entries = caller_limits.reserve(caller, 3_000)
        start.wait()
        failed = transact(client, [the_lock, *entries])
        if failed is None:
            landed.append(the_lock["Put"]["Item"]["id"]["S"])
        else:
            refused.append(failed)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(landed) == 3 and len(refused) == 17
    assert all(failed == [False, True, False] for failed in refused)  # the day's entry, each time
    reservation, _ = caller_limits.reserve(caller, 0)
    assert totals(dynamodb, table, reservation) == (9_000, 3)
    for lock_id in landed:
        assert "Item" in dynamodb.get_item(TableName=table, Key={"id": {"S": lock_id}}, ConsistentRead=True)


def test_a_give_back_restores_the_room_the_reservation_took(dynamodb, table):
    caller, caller_limits = new_caller(), limits(dynamodb, table, daily=10_000, hourly=1)
    reservation, _ = reserve(dynamodb, table, caller_limits, caller, 10_000)
    assert reserve(dynamodb, table, caller_limits, caller, 1)[1] == [True, True]

    assert transact(dynamodb, [lock(table), *caller_limits.give_back(reservation)]) is None

    assert totals(dynamodb, table, reservation) == (0, 0)
    assert reserve(dynamodb, table, caller_limits, caller, 10_000)[1] is None


def test_a_reservation_read_back_from_the_intents_record_gives_back_what_it_took(dynamodb, table):
    caller, caller_limits = new_caller(), limits(dynamodb, table)
    reservation, entries = caller_limits.reserve(caller, 2_500)
    record = {"id": {"S": f"test-record#{uuid.uuid4()}"}, **reservation.attributes()}
    assert transact(dynamodb, [{"Put": {"TableName": table, "Item": record}}, *entries]) is None

    stored = dynamodb.get_item(TableName=table, Key={"id": record["id"]}, ConsistentRead=True)["Item"]
    read_back = Reservation.from_attributes(stored)
    assert read_back == reservation
    release = {"Delete": {"TableName": table, "Key": {"id": record["id"]}}}
    assert transact(dynamodb, [release, *caller_limits.give_back(read_back)]) is None

    assert totals(dynamodb, table, reservation) == (0, 0)


@pytest.mark.parametrize(
    ("daily", "hourly", "amount", "already", "limit", "retry_after"),
    [
        # 02:59:30 UTC: the hour ends in 30 s, the day in 21 h 0 min 30 s.
        (10_000, 5, 5_000, 6_000, Limit.DAILY_AMOUNT, 75_630),
        (10_000, 1, 100, 100, Limit.HOURLY_LINKS, 30),
        (10_000, 1, 5_000, 6_000, Limit.DAILY_AMOUNT, 75_630),  # both refuse: the day's window ends last
        (0, 1, 100, 100, Limit.HOURLY_LINKS, 30),  # the daily limit off: the hour's entry is the only one
    ],
)
def test_a_refusal_names_the_limit_and_the_seconds_until_its_window_ends(
    dynamodb, table, daily, hourly, amount, already, limit, retry_after
):
    caller, caller_limits = new_caller(), limits(dynamodb, table, daily=daily, hourly=hourly)
    reserve(dynamodb, table, caller_limits, caller, already)

    reservation, failed = reserve(dynamodb, table, caller_limits, caller, amount)
    assert failed is not None
    problem = caller_limits.refusal(reservation, failed)

    assert (problem.status, problem.limit, problem.to_dict()["limit"]) == (429, limit, limit.value)
    assert problem.headers() == {"Retry-After": str(retry_after)}


def test_a_new_hour_has_room_again_and_a_retry_after_never_drops_below_a_second(dynamodb, table):
    clock = Clock(datetime(2031, 3, 14, 2, 59, 59, 900_000, tzinfo=UTC).timestamp())
    caller, caller_limits = new_caller(), limits(dynamodb, table, hourly=1, clock=clock)
    reserve(dynamodb, table, caller_limits, caller, 100)
    reservation, failed = reserve(dynamodb, table, caller_limits, caller, 100)
    assert failed == [False, True]

    assert caller_limits.refusal(reservation, failed).headers() == {"Retry-After": "1"}  # 0.1 s left
    clock.now = datetime(2031, 3, 14, 3, tzinfo=UTC).timestamp()
    later, failed = reserve(dynamodb, table, caller_limits, caller, 100)
    assert failed is None and later.hour_counter == reservation.hour_counter.replace("T02", "T03")
    assert later.day_counter == reservation.day_counter


def test_limits_that_are_off_reserve_nothing(dynamodb, table):
    reservation, entries = limits(dynamodb, table, daily=0, hourly=0).reserve(new_caller(), 3_000)

    assert entries == []
    assert reservation == Reservation(amount=3_000, day_counter=None, hour_counter=None)
    assert reservation.attributes() == {}
    assert limits(dynamodb, table, daily=0, hourly=0).give_back(reservation) == []


def test_an_override_set_by_the_command_applies_once_the_cached_copy_is_older_than_its_max_age(dynamodb, table, capsys):
    clock, caller = Clock(), new_caller()
    caller_limits = limits(dynamodb, table, daily=10_000, hourly=5, clock=clock, max_age=60)
    assert caller_limits.limit_for(caller) == CallerLimit(daily_amount_cents=10_000, hourly_links=5)

    assert command.main(["set", "--caller", caller, "--daily-amount-cents", "500", "--table", table]) == 0
    clock.now += 59
    assert caller_limits.limit_for(caller) == CallerLimit(10_000, 5)  # the container's copy, still fresh
    clock.now += 1
    assert caller_limits.limit_for(caller) == CallerLimit(500, 5)
    assert reserve(dynamodb, table, caller_limits, caller, 600)[1] == [True, False]

    # The hourly limit off for this caller alone: its reserve has the day's entry only.
    assert command.main(["set", "--caller", caller, "--hourly-links", "0", "--table", table]) == 0
    clock.now += 60
    assert caller_limits.limit_for(caller) == CallerLimit(500, 0)  # the daily override kept
    reservation, entries = caller_limits.reserve(caller, 100)
    assert reservation.hour_counter is None and len(entries) == 1

    assert command.main(["remove", "--caller", caller, "--table", table]) == 0
    clock.now += 60
    assert caller_limits.limit_for(caller) == CallerLimit(10_000, 5)
    assert caller_limits.limit_for(new_caller()) == CallerLimit(10_000, 5)  # others never changed


def test_an_override_turns_limits_on_for_one_caller_while_the_defaults_are_off(dynamodb, table):
    caller = new_caller()
    command.main(["set", "--caller", caller, "--hourly-links", "1", "--table", table])
    caller_limits = limits(dynamodb, table, daily=0, hourly=0)

    assert reserve(dynamodb, table, caller_limits, caller, 100)[1] is None
    assert reserve(dynamodb, table, caller_limits, caller, 100)[1] == [True]
    assert caller_limits.reserve(new_caller(), 100)[1] == []


def test_a_warm_create_reads_the_overrides_once_per_max_age(aws_endpoint, table):
    client = clients(aws_endpoint, "us-east-1")[0]
    reads: list[str] = []
    client.meta.events.register("before-call.dynamodb.GetItem", lambda **_: reads.append("GetItem"))
    clock = Clock()
    caller_limits = limits(client, table, clock=clock, max_age=60)

    for _ in range(5):
        caller_limits.reserve(new_caller(), 100)
        clock.now += 10
    assert reads == ["GetItem"]
    clock.now += 10  # 60 s after the first read
    caller_limits.reserve(new_caller(), 100)
    assert reads == ["GetItem", "GetItem"]


def test_an_unreadable_overrides_item_leaves_the_last_copy_read_or_the_defaults(dynamodb, table):
    """Never a refusal of its own (a replay or a retry reserves nothing): the last copy read stands in, and with
    none the defaults do, read again on the next create."""
    caller = new_caller()
    command.main(["set", "--caller", caller, "--hourly-links", "3", "--table", table])
    clock = Clock()
    read_once = limits(dynamodb, table, clock=clock, max_age=60)
    assert read_once.limit_for(caller).hourly_links == 3
    read_once._table_name = "no-such-table"  # the item cannot be read from now on
    clock.now += 61

    assert read_once.limit_for(caller).hourly_links == 3
    never_read = limits(dynamodb, "no-such-table")
    assert never_read.limit_for(caller) == never_read.limit_for(new_caller())  # the defaults


def test_the_overrides_item_is_one_item_of_the_idempotency_table(dynamodb, table):
    caller = new_caller()
    command.main(["set", "--caller", caller, "--daily-amount-cents", "700", "--hourly-links", "3", "--table", table])

    item = dynamodb.get_item(TableName=table, Key={"id": {"S": OVERRIDES_ID}}, ConsistentRead=True)["Item"]

    assert item["callers"]["M"][caller] == {"M": {"daily_amount_cents": {"N": "700"}, "hourly_links": {"N": "3"}}}


def test_show_gives_a_callers_override_and_what_it_used_of_the_current_windows(dynamodb, table, capsys):
    caller = new_caller()
    command.main(["set", "--caller", caller, "--hourly-links", "9", "--table", table])
    caller_limits = limits(dynamodb, table, clock=time.time, max_age=0)
    for amount in (1_200, 300):
        assert reserve(dynamodb, table, caller_limits, caller, amount)[1] is None
    capsys.readouterr()

    assert command.main(["show", "--caller", caller, "--table", table]) == 0
    shown = json.loads(capsys.readouterr().out)

    assert shown["override"] == {"hourly_links": 9}
    assert shown["usage"]["daily-amount"]["amount"] == 1_500
    assert shown["usage"]["hourly-links"]["links"] == 2
    assert command.main(["remove", "--caller", caller, "--table", table]) == 0
    assert json.loads(capsys.readouterr().out) == {"caller": caller, "removed": True}
    assert command.main(["remove", "--caller", caller, "--table", table]) == 0  # nothing left: says so, no error
    assert json.loads(capsys.readouterr().out) == {"caller": caller, "removed": False}
