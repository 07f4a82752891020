"""The limits module's own rules, without DynamoDB: the entries reserve() writes, what a reservation stores on an
intent's record, which refusal a failed transaction earns, how overrides are read, and how a refusal is counted
and logged. What DynamoDB does with the entries is tests/integration/test_limit_counters.py's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from payout_links.limits import (
    OVERRIDES_ID,
    CallerLimit,
    CallerLimits,
    Reservation,
    caller_hash,
    current_counters,
    parse_overrides,
    record_refusal,
)
from payout_links.problems import Limit, LimitExceeded
from tests.support import FUNCTION_METRICS, emitted_metrics, function_logs

pytestmark = pytest.mark.unit

CALLER = "partner:acme"
NOW = datetime(2031, 3, 14, 2, 15, tzinfo=UTC).timestamp()


class OverridesTable:
    """Stands in for the DynamoDB client: holds the overrides item (or none) and counts its reads."""

    def __init__(self, callers: dict[str, Any] | None = None) -> None:
        self.item = None if callers is None else {"id": {"S": OVERRIDES_ID}, "callers": {"M": callers}}
        self.reads = 0

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.reads += 1
        assert request["Key"] == {"id": {"S": OVERRIDES_ID}}
        return {"Item": self.item} if self.item else {}


def limits(table: OverridesTable | None = None, *, daily: int = 10_000, hourly: int = 5) -> CallerLimits:
    return CallerLimits(
        dynamodb_client=table or OverridesTable(),
        table_name="idempotency",
        daily_amount_cents=daily,
        hourly_links=hourly,
        clock=lambda: NOW,
    )


def test_a_reserve_adds_the_amount_and_a_link_each_within_its_limit():
    reservation, (day, hour) = limits(daily=10_000, hourly=5).reserve(CALLER, 3_000)

    assert reservation == Reservation(
        amount=3_000,
        day_counter=f"limits#{caller_hash(CALLER)}#day#2031-03-14",
        hour_counter=f"limits#{caller_hash(CALLER)}#hour#2031-03-14T02",
    )
    for entry, counter, total, added, room, window_end in (
        (day, reservation.day_counter, "amount", 3_000, 7_000, datetime(2031, 3, 15, tzinfo=UTC)),
        (hour, reservation.hour_counter, "links", 1, 4, datetime(2031, 3, 14, 3, tzinfo=UTC)),
    ):
        update = entry["Update"]
        assert update["TableName"] == "idempotency" and update["Key"] == {"id": {"S": counter}}
        assert update["UpdateExpression"] == "ADD #total :added SET #expiration = :expiration"
        assert update["ConditionExpression"] == "attribute_not_exists(#total) OR #total <= :room"
        assert update["ExpressionAttributeNames"] == {"#total": total, "#expiration": "expiration"}
        assert update["ExpressionAttributeValues"] == {
            ":added": {"N": str(added)},
            ":room": {"N": str(room)},
            ":expiration": {"N": str(int(window_end.timestamp()) + 86_400)},  # a day after the window ends
        }


def test_an_amount_over_the_limit_on_its_own_gets_a_condition_no_item_meets():
    _, (day, hour) = limits(daily=10_000).reserve(CALLER, 10_001)

    assert day["Update"]["ConditionExpression"] == "attribute_exists(#id) AND attribute_not_exists(#id)"
    assert day["Update"]["ExpressionAttributeNames"]["#id"] == "id"
    assert ":room" not in day["Update"]["ExpressionAttributeValues"]
    assert hour["Update"]["ConditionExpression"].endswith("#total <= :room")


@pytest.mark.parametrize(
    ("daily", "hourly", "entries"),
    [(0, 0, []), (0, 5, ["links"]), (10_000, 0, ["amount"]), (10_000, 5, ["amount", "links"])],
)
def test_only_the_limits_that_are_on_get_an_entry(daily, hourly, entries):
    reservation, written = limits(daily=daily, hourly=hourly).reserve(CALLER, 100)

    assert [entry["Update"]["ExpressionAttributeNames"]["#total"] for entry in written] == entries
    assert (reservation.day_counter is not None, reservation.hour_counter is not None) == (bool(daily), bool(hourly))


def test_counters_name_the_caller_by_hash_and_the_window_in_utc():
    counters = current_counters("user:ada@example.com", NOW)

    assert caller_hash("user:ada@example.com") != caller_hash("user:ada@example.co")
    assert len(caller_hash(CALLER)) == 32 and int(caller_hash(CALLER), 16) >= 0
    for counter in counters.values():
        assert "ada" not in counter.id
    assert counters[Limit.DAILY_AMOUNT].id.endswith("#day#2031-03-14")
    assert counters[Limit.HOURLY_LINKS].id.endswith("#hour#2031-03-14T02")
    assert counters[Limit.HOURLY_LINKS].window_end == datetime(2031, 3, 14, 3, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "reservation",
    [
        Reservation(amount=2_500, day_counter="limits#" + "a" * 32 + "#day#2031-03-14", hour_counter=None),
        Reservation(amount=2_500, day_counter=None, hour_counter="limits#" + "a" * 32 + "#hour#2031-03-14T02"),
        Reservation(
            amount=2_500,
            day_counter="limits#" + "a" * 32 + "#day#2031-03-14",
            hour_counter="limits#" + "a" * 32 + "#hour#2031-03-14T02",
        ),
    ],
)
def test_a_reservation_survives_the_intents_record(reservation):
    record = {"id": {"S": "payout-link#x"}, "status": {"S": "INPROGRESS"}, **reservation.attributes()}

    assert Reservation.from_attributes(json.loads(json.dumps(record))) == reservation


def test_a_reservation_of_nothing_stores_nothing_and_a_record_without_one_has_none():
    assert Reservation(amount=100, day_counter=None, hour_counter=None).attributes() == {}
    assert Reservation.from_attributes({"id": {"S": "payout-link#x"}}) is None
    with pytest.raises(ValueError, match="amount"):
        Reservation.from_attributes({"reservation": {"S": '{"day":"limits#' + "a" * 32 + '#day#2031-03-14"}'}})


def test_a_give_back_subtracts_exactly_what_was_reserved_without_a_condition():
    caller_limits = limits()
    reservation, reserved = caller_limits.reserve(CALLER, 3_000)

    given_back = caller_limits.give_back(reservation)

    assert [entry["Update"]["ExpressionAttributeValues"][":added"] for entry in given_back] == [
        {"N": "-3000"},
        {"N": "-1"},
    ]
    for back, forth in zip(given_back, reserved, strict=True):
        assert "ConditionExpression" not in back["Update"]
        assert back["Update"]["Key"] == forth["Update"]["Key"]
        # The same expiration: a give-back never makes a counter outlive its window by more than a day.
        assert (
            back["Update"]["ExpressionAttributeValues"][":expiration"]
            == (forth["Update"]["ExpressionAttributeValues"][":expiration"])
        )


def test_a_refusal_needs_one_flag_per_entry_and_at_least_one_failure():
    caller_limits = limits()
    reservation, _ = caller_limits.reserve(CALLER, 100)

    with pytest.raises(ValueError, match="2 entries"):
        caller_limits.refusal(reservation, [True])
    with pytest.raises(ValueError, match="no reserve entry"):
        caller_limits.refusal(reservation, [False, False])
    assert caller_limits.refusal(reservation, [False, True]).limit is Limit.HOURLY_LINKS
    # 02:15 UTC: 45 minutes left in the hour, 21 h 45 min in the day.
    assert caller_limits.refusal(reservation, [False, True]).retry_after == 45 * 60
    assert caller_limits.refusal(reservation, [True, True]).retry_after == (21 * 60 + 45) * 60


def test_overrides_apply_field_by_field_and_are_read_once_per_max_age():
    table = OverridesTable(
        {
            CALLER: {"M": {"daily_amount_cents": {"N": "500"}}},
            "client:batch": {"M": {"daily_amount_cents": {"N": "0"}, "hourly_links": {"N": "1000"}}},
        }
    )
    clock = [NOW]
    caller_limits = CallerLimits(
        dynamodb_client=table,
        table_name="idempotency",
        daily_amount_cents=10_000,
        hourly_links=5,
        overrides_max_age_seconds=60,
        clock=lambda: clock[0],
    )

    assert caller_limits.limit_for(CALLER) == CallerLimit(daily_amount_cents=500, hourly_links=5)
    assert caller_limits.limit_for("client:batch") == CallerLimit(daily_amount_cents=0, hourly_links=1000)
    assert caller_limits.limit_for("user:other") == CallerLimit(daily_amount_cents=10_000, hourly_links=5)
    assert table.reads == 1
    clock[0] -= 5  # a clock that went back is no reason to trust the copy longer
    caller_limits.limit_for(CALLER)
    assert table.reads == 2


def test_no_overrides_item_means_the_defaults_for_everyone():
    assert limits(OverridesTable(None)).limit_for(CALLER) == CallerLimit(10_000, 5)


def test_a_malformed_override_leaves_that_field_at_its_default_and_says_so_without_the_caller():
    item = {
        "callers": {
            "M": {
                CALLER: {"M": {"daily_amount_cents": {"N": "-5"}, "hourly_links": {"N": "7"}}},
                "user:typo": {"M": {"hourly_links": {"S": "ten"}, "daily_amount_cents": {"N": "2.5"}}},
                "user:flat": {"N": "3"},
            }
        }
    }

    with function_logs() as logs:
        overrides = parse_overrides(item)

    assert overrides == {CALLER: {"hourly_links": 7}, "user:typo": {}, "user:flat": {}}
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [line["override"] for line in lines] == [
        "daily_amount_cents",
        "daily_amount_cents",
        "hourly_links",
        "entry",
    ]
    assert all(line["level"] == "WARNING" for line in lines)
    assert CALLER not in logs.getvalue() and "typo" not in logs.getvalue()


@pytest.mark.parametrize("limit", list(Limit))
def test_a_refusal_is_counted_by_limit_and_logged_once_without_the_caller(limit):
    from payout_links.observability import logger

    problem = LimitExceeded("x", limit=limit, retry_after=120)
    logger.append_keys(caller=CALLER)  # as a route does for every line of its request
    try:
        with emitted_metrics() as documents, function_logs() as logs:
            record_refusal(CALLER, problem)
    finally:
        logger.remove_keys(["caller"])

    (document,) = documents
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "PayoutLinkProxy"
    assert directive["Metrics"] == [{"Name": "LimitExceeded", "Unit": "Count"}]
    assert FUNCTION_METRICS["LimitExceeded"] == "Count"
    assert [sorted(dimensions) for dimensions in directive["Dimensions"]] == [["limit", "service"]]
    assert (document["limit"], document["service"], document["LimitExceeded"]) == (
        limit.value,
        "payout-link-proxy",
        [1.0],
    )
    (line,) = [json.loads(line) for line in logs.getvalue().splitlines()]
    # An expected refusal, the caller's own to wait out: INFO, never a WARNING that hides the real ones.
    assert (line["level"], line["message"], line["limit"]) == ("INFO", "caller limit exceeded", limit.value)
    assert line["caller_hash"] == caller_hash(CALLER) and line["retry_after"] == 120
    assert CALLER not in json.dumps(document) + logs.getvalue()
