"""Holds each caller to its limits: an amount it may pay out per UTC day, and links it may create per UTC hour.

A caller (`user:<sub>`, `client:<client_id>`, `partner:<name>`) has two limits, either of which may be off (0): an
amount per UTC day and a number of links per UTC clock hour. The function's settings give the defaults; one item
in the idempotency table, `limits#overrides`, holds per-caller overrides that an operator edits without a redeploy
(scripts/caller_limits.py). Each container reads that item with one GetItem and keeps it for
`overrides_max_age_seconds`, so a warm create costs no extra round trip and an override takes effect within that
time.

What a caller has used lives in counter items of the same table, one per caller and window:

    limits#<caller hash>#day#2026-12-07       amount: the cents reserved that UTC day
    limits#<caller hash>#hour#2026-12-07T02   links:  the links reserved in that UTC hour

where the caller hash is the first 32 hex digits of the caller's sha256 (the raw caller is in no id and no
counter), and each counter expires (TTL on `expiration`) a day after its window ends.

`CallerLimits.reserve` gives the TransactWriteItems entries that add a create's amount and one link to the
caller's current windows, each conditioned on the total staying within its limit. They go into the transaction
that takes the intent's lock, so that two concurrent creates can never both take the last room: one of them fails
its condition, takes no lock, and is refused with `refusal`'s problem (429 `limit-exceeded`). A create whose
outcome is CREATED or UNKNOWN keeps its reservation; one that certainly made no link gives it back
(`give_back`) in the same write that releases its key. The `Reservation` itself is stored on the intent's record
(`Reservation.attributes`), so that whoever releases the key knows what to give back.

Every write here goes through TransactWriteItems, whose ClientRequestToken botocore fills in once per call and
keeps across its retries: a reservation or a give-back whose answer was lost and which botocore sent again is
applied once.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, NamedTuple

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from payout_links.aws import error_code
from payout_links.observability import logger
from payout_links.problems import Limit, LimitExceeded

KEY_ATTR = "id"  # the idempotency table's partition key
EXPIRY_ATTR = "expiration"  # and its TTL attribute
COUNTER_PREFIX = "limits"
OVERRIDES_ID = f"{COUNTER_PREFIX}#overrides"
OVERRIDES_ATTR = "callers"  # caller -> {daily_amount_cents, hourly_links}, either absent: the default
DAILY_FIELD = "daily_amount_cents"
HOURLY_FIELD = "hourly_links"
# A counter outlives its window by a day: long enough for any request that reserved in it to give back.
COUNTER_RETENTION_SECONDS = 86_400
METRIC = "LimitExceeded"

# A condition no item can meet: the reserve of an amount that exceeds the limit on its own.
_NEVER = "attribute_exists(#id) AND attribute_not_exists(#id)"
_WITHIN = "attribute_not_exists(#total) OR #total <= :room"
# What a refused caller reads, by the limit that refused it.
_REFUSALS = {
    Limit.DAILY_AMOUNT: "This payout would take the caller past the amount it may pay out per day; the day ends at "
    "00:00 UTC.",
    Limit.HOURLY_LINKS: "The caller has created as many payout links as it may this hour; the hour ends on the hour, "
    "UTC.",
}


def caller_hash(caller: str) -> str:
    """How a caller appears in counter ids and in log lines about limits: 32 hex digits of its sha256."""
    return hashlib.sha256(caller.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Window:
    """One UTC day or one UTC clock hour, and the counter attribute that totals what was reserved in it."""

    limit: Limit
    label: str  # 2026-12-07, or 2026-12-07T02
    start: int  # Unix seconds
    end: int

    _KINDS: ClassVar[dict[Limit, tuple[str, str, int, str]]] = {
        # limit: (kind in the counter id, strftime format of its label, seconds, counter attribute)
        Limit.DAILY_AMOUNT: ("day", "%Y-%m-%d", 86_400, "amount"),
        Limit.HOURLY_LINKS: ("hour", "%Y-%m-%dT%H", 3_600, "links"),
    }

    @classmethod
    def at(cls, limit: Limit, now: float) -> _Window:
        _, label_format, seconds, _ = cls._KINDS[limit]
        start = int(now // seconds * seconds)  # Unix time has no leap seconds: days and hours are whole multiples
        return cls(limit, datetime.fromtimestamp(start, UTC).strftime(label_format), start, start + seconds)

    @classmethod
    def of_counter(cls, counter_id: str) -> _Window:
        """The window a counter id names (`limits#<hash>#day#2026-12-07`)."""
        prefix, _, kind, label = counter_id.split("#")
        (limit,) = [limit for limit, (name, *_) in cls._KINDS.items() if name == kind]
        _, label_format, seconds, _ = cls._KINDS[limit]
        start = int(datetime.strptime(label, label_format).replace(tzinfo=UTC).timestamp())
        if prefix != COUNTER_PREFIX or cls.at(limit, start).label != label:
            raise ValueError(f"not a limit counter: {counter_id!r}")
        return cls(limit, label, start, start + seconds)

    @property
    def total_attr(self) -> str:
        return self._KINDS[self.limit][3]

    @property
    def expiration(self) -> int:
        return self.end + COUNTER_RETENTION_SECONDS

    def counter_id(self, caller: str) -> str:
        return f"{COUNTER_PREFIX}#{caller_hash(caller)}#{self._KINDS[self.limit][0]}#{self.label}"


class Counter(NamedTuple):
    """A caller's counter for one window: its item id, the attribute that totals it, and when the window ends."""

    id: str
    total_attr: str
    window_end: int  # Unix seconds


def current_counters(caller: str, now: float) -> dict[Limit, Counter]:
    """The caller's counters of the windows `now` is in, by limit (what the operator command shows)."""
    windows = {limit: _Window.at(limit, now) for limit in Limit}
    return {limit: Counter(w.counter_id(caller), w.total_attr, w.end) for limit, w in windows.items()}


@dataclass(frozen=True)
class CallerLimit:
    """What applies to one caller; 0 turns that limit off."""

    daily_amount_cents: int
    hourly_links: int


@dataclass(frozen=True)
class Reservation:
    """What one intent holds against its caller's windows: its amount in the day's counter, one link in the
    hour's; a counter is None when that limit is off for the caller."""

    amount: int
    day_counter: str | None  # counter item id, None when the daily limit is off
    hour_counter: str | None

    # The attribute of the intent's record that holds it (JSON: `amount`, `day`, `hour`), present only when the
    # reservation holds something. One attribute, not three: every create writes it.
    ATTR: ClassVar[str] = "reservation"

    def attributes(self) -> dict[str, Any]:
        """DynamoDB attribute values to store on the intent's record; {} when the reservation holds nothing."""
        if self.day_counter is None and self.hour_counter is None:
            return {}
        held = {"amount": self.amount, "day": self.day_counter, "hour": self.hour_counter}
        return {self.ATTR: {"S": json.dumps(held, separators=(",", ":"))}}

    @classmethod
    def from_attributes(cls, item: dict[str, Any]) -> Reservation | None:
        """The reservation an intent's record (a DynamoDB item, as GetItem returns it) holds; None when it holds
        none. One that names a counter but no amount was not written by `attributes`: ValueError."""
        if cls.ATTR not in item:
            return None
        held = json.loads(item[cls.ATTR]["S"])
        if held.get("day") is None and held.get("hour") is None:
            return None
        if not isinstance(held.get("amount"), int):
            raise ValueError("the record names limit counters but no amount")
        return cls(amount=held["amount"], day_counter=held.get("day"), hour_counter=held.get("hour"))

    def held(self) -> list[tuple[str, _Window]]:
        """Each counter it holds room in, with its window, in the order of `reserve`'s entries: the day's, then the
        hour's."""
        return [(counter, _Window.of_counter(counter)) for counter in (self.day_counter, self.hour_counter) if counter]


class CallerLimits:
    """Each caller's limits, their per-caller overrides (cached per container) and the writes that reserve and
    give back room in the caller's windows."""

    def __init__(
        self,
        *,
        dynamodb_client: Any,
        table_name: str,
        daily_amount_cents: int,
        hourly_links: int,
        overrides_max_age_seconds: float = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if daily_amount_cents < 0 or hourly_links < 0:
            raise ValueError("a limit is a count, or 0 for off")
        self._client = dynamodb_client
        self._table_name = table_name
        self._default = CallerLimit(daily_amount_cents=daily_amount_cents, hourly_links=hourly_links)
        self._max_age = overrides_max_age_seconds
        self._clock = clock
        self._overrides: dict[str, dict[str, int]] | None = None
        self._read_at = 0.0

    def limit_for(self, caller: str) -> CallerLimit:
        """The caller's limits: its override's, field by field, or the defaults. May read the overrides item
        (one GetItem, when the cached copy is missing or older than the max age); when that read fails, the last
        copy read applies, or the defaults when there is none."""
        override = self._current_overrides().get(caller, {})
        return CallerLimit(
            daily_amount_cents=override.get(DAILY_FIELD, self._default.daily_amount_cents),
            hourly_links=override.get(HOURLY_FIELD, self._default.hourly_links),
        )

    def reserve(self, caller: str, amount: int) -> tuple[Reservation, list[dict[str, Any]]]:
        """The TransactWriteItems entries (Update) that reserve `amount` and one link in the caller's current
        windows, each conditioned on staying within its limit; [] when both limits are off for this caller.

        The day's entry comes first, then the hour's (each only when that limit is on). An amount above the daily
        limit on its own gets a condition that can never pass."""
        if amount < 0:
            raise ValueError("an amount is never negative")
        limit = self.limit_for(caller)
        now = self._clock()
        entries: list[dict[str, Any]] = []
        counters: dict[Limit, str] = {}
        for kind, most, added in (
            (Limit.DAILY_AMOUNT, limit.daily_amount_cents, amount),
            (Limit.HOURLY_LINKS, limit.hourly_links, 1),
        ):
            if most == 0:
                continue
            window = _Window.at(kind, now)
            counters[kind] = window.counter_id(caller)
            entries.append(self._reserve_in(counters[kind], window, added, most))
        reservation = Reservation(
            amount=amount,
            day_counter=counters.get(Limit.DAILY_AMOUNT),
            hour_counter=counters.get(Limit.HOURLY_LINKS),
        )
        return reservation, entries

    def refusal(self, reservation: Reservation, failed: Sequence[bool]) -> LimitExceeded:
        """The problem for a transaction whose reserve entries' conditions failed (`failed[i]` for entry i, in
        reserve()'s order): which limit, and Retry-After = seconds until that window ends (at least 1).

        `failed[i]` is whether entry i's cancellation reason is `ConditionalCheckFailed`; a `TransactionConflict`
        (another transaction on the same counter at that moment) is no refusal. When both limits refused, the
        daily one is named: its window ends last, and no retry passes before it does."""
        held = reservation.held()
        if len(failed) != len(held):
            raise ValueError(f"the reservation has {len(held)} entries, not {len(failed)}")
        refused = [window for (_, window), condition_failed in zip(held, failed, strict=True) if condition_failed]
        if not refused:
            raise ValueError("no reserve entry failed its condition")
        window = max(refused, key=lambda each: each.end)
        retry_after = max(1, math.ceil(window.end - self._clock()))
        return LimitExceeded(_REFUSALS[window.limit], limit=window.limit, retry_after=retry_after)

    def give_back(self, reservation: Reservation) -> list[dict[str, Any]]:
        """TransactWriteItems entries that return the reservation (release of a key nothing was made for).

        Unconditioned: a condition that failed would fail the release of the key with it. A counter only ever
        gets back what a reserve that landed put in (a release is conditioned on the lock its request holds), and
        it outlives its window by a day, so its total does not go below zero; should it be gone all the same, the
        give-back makes a negative counter that expires like any other, in a window that is over."""
        return [
            self._update(counter, window, -(reservation.amount if window.limit is Limit.DAILY_AMOUNT else 1))
            for counter, window in reservation.held()
        ]

    def _reserve_in(self, counter: str, window: _Window, added: int, most: int) -> dict[str, Any]:
        entry = self._update(counter, window, added)
        update = entry["Update"]
        if added <= most:
            update["ConditionExpression"] = _WITHIN
            update["ExpressionAttributeValues"][":room"] = {"N": str(most - added)}
        else:  # over the limit on its own: never reserved, whatever the counter holds
            update["ConditionExpression"] = _NEVER
            update["ExpressionAttributeNames"]["#id"] = KEY_ATTR
        return entry

    def _update(self, counter: str, window: _Window, added: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table_name,
                "Key": {KEY_ATTR: {"S": counter}},
                "UpdateExpression": "ADD #total :added SET #expiration = :expiration",
                "ExpressionAttributeNames": {"#total": window.total_attr, "#expiration": EXPIRY_ATTR},
                "ExpressionAttributeValues": {
                    ":added": {"N": str(added)},
                    ":expiration": {"N": str(window.expiration)},
                },
            }
        }

    def _current_overrides(self) -> dict[str, dict[str, int]]:
        now = self._clock()
        if self._overrides is not None and 0 <= now - self._read_at < self._max_age:
            return self._overrides
        try:
            item = self._client.get_item(
                TableName=self._table_name,
                Key={KEY_ATTR: {"S": OVERRIDES_ID}},
                ProjectionExpression="#callers",
                ExpressionAttributeNames={"#callers": OVERRIDES_ATTR},
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            # Never a reason to refuse a create: a replay or a retry reserves nothing, and a new intent's lock
            # write meets the same table anyway. The last copy read stands in; with none, the defaults do (not
            # kept: the next create reads again).
            # A WARNING: nothing is refused for it (when the table is down, the lock write's ERROR says so).
            logger.warning(
                "the caller limit overrides could not be read; "
                + ("the last copy read applies" if self._overrides is not None else "the defaults apply"),
                extra={"store_error": error_code(exc)},
            )
            return self._overrides if self._overrides is not None else {}
        self._overrides, self._read_at = parse_overrides(item), now
        return self._overrides


def parse_overrides(item: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """The overrides item (a DynamoDB item, or None when there is none) as caller -> {field: limit}. A field that
    is not a whole number of at least 0, or an entry that is not a map, is left out, so that the default applies,
    and logged (by caller hash): a hand-edited item never stops creates."""
    callers = ((item or {}).get(OVERRIDES_ATTR) or {}).get("M", {})
    overrides: dict[str, dict[str, int]] = {}
    for caller, entry in callers.items():
        overrides[caller] = {}
        fields = entry.get("M") if isinstance(entry, dict) else None
        if fields is None:
            logger.warning(
                "a caller limit override is not a map; the defaults apply",
                extra={"caller_hash": caller_hash(caller), "override": "entry"},
            )
            continue
        for name in (DAILY_FIELD, HOURLY_FIELD):
            if name not in fields:
                continue
            value = _whole_number(fields[name])
            if value is None:
                logger.warning(
                    "a caller limit override is not a whole number; the default applies",
                    extra={"caller_hash": caller_hash(caller), "override": name},
                )
            else:
                overrides[caller][name] = value
    return overrides


def _whole_number(value: Any) -> int | None:
    try:
        number = Decimal(value["N"])
    except (KeyError, TypeError, InvalidOperation):
        return None
    return int(number) if number >= 0 and number == number.to_integral_value() else None


def record_refusal(caller: str, problem: LimitExceeded) -> None:
    """Count a refusal (`LimitExceeded`, with the refusing limit as its one dimension beside the service, never
    the caller) and log it once at INFO (a refusal the caller's own limit makes, expected), with the caller hashed as
    in its counters' ids."""
    with single_metric(name=METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="limit", value=problem.limit.value)
    logger.info(
        "caller limit exceeded",
        extra={
            "limit": problem.limit.value,
            "retry_after": problem.retry_after,
            "caller_hash": caller_hash(caller),
            "caller": None,  # the request's raw caller stays out of this line (None leaves the key out)
        },
    )
