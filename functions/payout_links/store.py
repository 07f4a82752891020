"""The intent's record in DynamoDB, and the only writes that move it from one state to the next.

One item per intent in the idempotency table, keyed by the intent's record id (intent.py). Its states, and the
write that makes each (every write after the lock is conditioned on the lock token of the request that holds it,
so a request whose lock expired and was taken over can never release, complete or spend another's lock):

    (none) ──lock──▶ LOCKED ──complete──▶ COMPLETED   the link, replayed for the TTL; the owner recorded in the same
                       │                               transaction (owners.py)
                       ├──release──▶ (none)            nothing was made, for certain: the key is free again
                       ├──spend────▶ SPENT             the upstream made a link that is never handed out (it did not
                       │                               match the request, or another caller owns its id): the
                       │                               problem is kept and answered again, the key never used again
                       └──mark unknown──▶ UNKNOWN      a link may exist: the lock is dropped, the fingerprint kept
    UNKNOWN, or LOCKED past its lock's expiry (a crash) ──take over──▶ LOCKED   by the same request only: the
                                                        caller's retry, or the settler once the intent is due

LOCKED and UNKNOWN are one stored status, INPROGRESS, told apart by the lock's expiry; COMPLETED is written as
Powertools idempotency wrote it (`status`, `data`, `validation`, `expiration`), so records from before this module
are still replayed. While an intent is unsettled its item also carries what the settler needs to resend it
without its caller (`intent`: its caller, key and upstream request, payee contact details included, as JSON)
and its place in the sparse `settle-queue` index (`settle_queue`, `settle_at`); completing or releasing removes
them. A new intent's lock also reserves its amount and one link against its caller's limits (limits.py), in the
same transaction; releasing gives the reservation back in the same write.

Every method costs one DynamoDB call unless it says otherwise; the create path is lock + complete: two.

Powertools: the store was once a subclass of Powertools idempotency's DynamoDB layer. It overrode five members
(three private hooks), called five private helpers and read nine attributes, and settling and limits would have
needed more (a lock that is a transaction with counters, a take-over outside Powertools' call flow, a state its
model has no place for); it now subclasses and calls nothing of it. What it still shares is the record format, so
that a rollback to a deploy that used Powertools replays the store's records, and the store reads theirs:

    shared with Powertools                              where Powertools defines it            documented
    attribute names (A.ID ... A.VALIDATION, A.LOCK_EXPIRY)  DynamoDBPersistenceLayer defaults      yes
    INPROGRESS, COMPLETED                               STATUS_CONSTANTS                       yes
    record id and fingerprint digests (intent.py)       _get_hashed_idempotency_key/_payload   no
    a COMPLETED item read back as its link              _item_to_data_record                   no

tests/unit/test_powertools_contract.py checks each line against the installed Powertools (and reports each when
a monkeypatched Powertools changes it); tests/integration/test_stored_records.py reads a completed record through
Powertools' own `get_record`.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payout_links.intent import Intent
from payout_links.limits import CallerLimits, Reservation, record_refusal
from payout_links.observability import logger
from payout_links.owners import LinkOwners
from payout_links.problems import Dependency, DependencyUnavailable, IdempotencyKeyReused, Problem, RequestInProgress

IN_PROGRESS, COMPLETED, SPENT = "INPROGRESS", "COMPLETED", "SPENT"
DUE, STRANDED = "due", "stranded"  # the settle-queue index's partitions
SETTLE_INDEX = "settle-queue"
# A stranded intent (its outcome still unknown when its record would expire) is kept this long for operators.
STRANDED_RETENTION_SECONDS = 30 * 86_400
# An unsettled intent is stranded once it has less than this left before its record expires: several settler runs,
# so that no intent expires unseen, even while the settler is halted by an outage.
STRAND_MARGIN_SECONDS = 900
LOCAL_CACHE_ITEMS = 512  # completed records replayed from memory: a few hundred small JSON bodies
# A transaction that meets another on the same items (two creates of one caller reserving at once) is retried.
TRANSACTION_ATTEMPTS = 3
# Errors after which a write certainly did not land.
_NOT_APPLIED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ValidationException",
        "ResourceNotFoundException",
        "AccessDeniedException",
        "TransactionConflictException",
    }
)


class KeyState(StrEnum):
    """Where a failed create leaves its key, as the problem's `key_state` tells the caller."""

    BOUND = "bound"  # a link may exist: retry with the same key and body (the proxy settles it if you don't)
    RELEASED = "released"  # nothing was made: the key is free, for any body
    SPENT = "spent"  # this key will never make a link: a new request needs a new key


class A:
    """The item's attribute names."""

    ID = "id"
    EXPIRY = "expiration"
    STATUS = "status"
    VALIDATION = "validation"
    DATA = "data"
    LOCK_EXPIRY = "in_progress_expiration"  # milliseconds, as Powertools wrote it
    TOKEN = "lock_token"  # noqa: S105 - an attribute name
    # What the settler needs to resend an unsettled intent without its caller, in one attribute (JSON): `caller`,
    # `key`, `request` (the upstream request, payee contact details included) and `since` (when it was first
    # locked: the oldest-due-intent alarm reads its age).
    INTENT = "intent"
    QUEUE = "settle_queue"
    SETTLE_AT = "settle_at"
    ATTEMPTS = "settle_attempts"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Created:
    link: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Lock:
    """The lock one request (or settler run) holds on an intent."""

    intent: Intent
    token: str
    # Taken over from a record already bound (unknown, or a crashed request's): a failure that proves nothing about
    # the earlier attempts (no connection, 429, 401) may not release the key.
    inherited: bool
    expires_at: int  # the record's expiry
    since: int  # when the intent was first locked
    attempts: int = 0  # settler resends before this lock
    reservation: Reservation | None = None


@dataclass(frozen=True)
class DueIntent:
    """An intent the settle-queue index says is due, as the index had it."""

    record_id: str
    token: str
    since: int
    item: dict[str, Any]

    def intent(self) -> Intent | None:
        """The intent the record holds, to name it on log lines before it is taken over; None when it holds none
        that can be read (`IntentStore.take_over_due` judges that)."""
        try:
            unsettled = json.loads(self.item[A.INTENT]["S"])
            return Intent.of(unsettled["caller"], unsettled["key"], unsettled["request"])
        except (KeyError, TypeError, ValueError):
            return None


class LockLost(Exception):
    """A write conditioned on this request's lock found it taken over by another request of the same intent."""


class OwnedByAnother(Exception):
    """The upstream's link id is already recorded for another caller."""


class StoreUnavailable(Exception):
    """A write failed; `landed` says whether it may have been applied all the same."""

    def __init__(self, code: str, *, landed: bool) -> None:
        super().__init__(code)
        self.code = code
        self.landed = landed


class IntentStore:
    def __init__(
        self,
        *,
        client: Any,
        table_name: str,
        owners: LinkOwners,
        limits: CallerLimits,
        ttl_seconds: int,
        settle_after_seconds: int,
    ) -> None:
        self._client = client
        self._table = table_name
        self._owners = owners
        self._limits = limits
        self._ttl_seconds = ttl_seconds
        self._settle_after_seconds = settle_after_seconds
        self._completed: OrderedDict[str, tuple[str, str, int]] = OrderedDict()  # id -> (validation, data, expiry)

    # --- lock ---------------------------------------------------------------------------------------------------

    def lock(self, intent: Intent, *, lock_seconds: float) -> Lock | Created:
        """Lock a new intent, reserving against its caller's limits; or take over this request's own unsettled
        intent; or the completed link, replayed. Refused: `IdempotencyKeyReused` (another body), `RequestInProgress`
        (locked by another request), the stored problem of a spent key, `LimitExceeded`, `DependencyUnavailable`.
        One call (a transaction when a limit applies); a take-over costs a second."""
        if replay := self._cached_replay(intent):
            return replay
        now = time.time()
        token = uuid.uuid4().hex
        expires_at = int(now) + self._ttl_seconds
        reservation, reserve = self._limits.reserve(intent.caller, intent.amount)
        item = {
            A.ID: {"S": intent.record_id},
            A.EXPIRY: {"N": str(expires_at)},
            A.STATUS: {"S": IN_PROGRESS},
            A.VALIDATION: {"S": intent.fingerprint},
            **self._lock_attributes(intent, token, now, lock_seconds, since=int(now)),
            **reservation.attributes(),
        }
        put = {
            "TableName": self._table,
            "Item": item,
            # A record past its expiry is gone as far as anyone can tell (TTL deletes lag behind), unless a request
            # still holds its lock.
            "ConditionExpression": (
                "attribute_not_exists(#id) OR (#expiry < :now AND NOT (#status = :inprogress AND #lock > :now_ms))"
            ),
            "ExpressionAttributeNames": {"#id": A.ID, "#expiry": A.EXPIRY, "#status": A.STATUS, "#lock": A.LOCK_EXPIRY},
            "ExpressionAttributeValues": {
                ":now": {"N": str(int(now))},
                ":now_ms": {"N": str(int(now * 1000))},
                ":inprogress": {"S": IN_PROGRESS},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        held = Lock(intent, token, inherited=False, expires_at=expires_at, since=int(now), reservation=reservation)
        try:
            if reserve:
                self._transact([{"Put": put}, *reserve])
            else:
                self._client.put_item(**put)
            return held
        except _Cancelled as cancelled:
            if cancelled.failed[0]:
                return self._existing(intent, cancelled.items[0], token, lock_seconds)
            # Not the lock's condition, so a counter's: over a limit.
            refusal = self._limits.refusal(reservation, cancelled.failed[1:])
            record_refusal(intent.caller, refusal)
            raise refusal.bound_to(KeyState.RELEASED) from None
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return self._existing(intent, exc.response.get("Item"), token, lock_seconds)
            raise self._unavailable(_store_error(exc), held) from None
        except (BotoCoreError, StoreUnavailable) as exc:
            raise self._unavailable(_store_error(exc), held) from None

    def _existing(self, intent: Intent, item: dict[str, Any] | None, token: str, lock_seconds: float) -> Lock | Created:
        """What the record that stopped a new lock says: a replay, a refusal, or a lock to take over."""
        if item is None:  # gone again since: another request's record, released meanwhile
            raise _in_progress()
        if item.get(A.TOKEN, {}).get("S") == token:
            # Our own write, answered late and retried by botocore: what it replaced is not known.
            return self._held(intent, item, token, inherited=True)
        status = item[A.STATUS]["S"]
        if item[A.VALIDATION]["S"] != intent.fingerprint:
            raise IdempotencyKeyReused("This idempotency key was already used with a different request.").bound_to(
                KeyState.SPENT if status == SPENT else KeyState.BOUND
            )
        if status == COMPLETED:
            self._remember(item)
            return Created(link=json.loads(item[A.DATA]["S"]), replayed=True)
        if status == SPENT:
            raise _spent_problem(item)
        if int(item.get(A.LOCK_EXPIRY, {}).get("N", "0")) >= time.time() * 1000:
            raise _in_progress()
        return self._take_over(intent, item, lock_seconds)

    def _take_over(self, intent: Intent, item: dict[str, Any], lock_seconds: float) -> Lock:
        """Lock an unsettled intent whose lock has expired, for the same request: one conditional write that only
        one request can win."""
        now = time.time()
        token = uuid.uuid4().hex
        previous = item.get(A.TOKEN, {}).get("S")
        # A record from before the settler carries no intent: its age counts from this take-over.
        attributes = self._lock_attributes(intent, token, now, lock_seconds, since=_since(item, default=int(now)))
        # The record outlives the lock, and the settler's look at it after: never replaced under a held lock.
        expires_at = max(int(item[A.EXPIRY]["N"]), int(attributes[A.SETTLE_AT]["N"]) + STRAND_MARGIN_SECONDS)
        attributes[A.EXPIRY] = {"N": str(expires_at)}
        names = {f"#{name}": name for name in attributes}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={A.ID: {"S": intent.record_id}},
                UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in attributes),
                ConditionExpression=(
                    "#status = :inprogress AND #validation = :validation AND #old_lock < :now_ms"
                    + (" AND #old_token = :previous" if previous else " AND attribute_not_exists(#old_token)")
                ),
                ExpressionAttributeNames={
                    **names,
                    "#status": A.STATUS,
                    "#validation": A.VALIDATION,
                    "#old_lock": A.LOCK_EXPIRY,
                    "#old_token": A.TOKEN,
                },
                ExpressionAttributeValues={
                    **{f":{name}": value for name, value in attributes.items()},
                    ":inprogress": {"S": IN_PROGRESS},
                    ":validation": {"S": intent.fingerprint},
                    ":now_ms": {"N": str(int(now * 1000))},
                    **({":previous": {"S": previous}} if previous else {}),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _store_problem(_store_error(exc), KeyState.BOUND) from None
            now_item = exc.response.get("Item") or {}
            if now_item.get(A.TOKEN, {}).get("S") != token:
                raise _in_progress() from None  # another request took it first
            # Our own write, answered late and sent again by botocore: the lock is ours.
        except BotoCoreError as exc:
            raise _store_problem(_store_error(exc), KeyState.BOUND) from None
        return self._held(intent, {**item, **attributes}, token, inherited=True)

    def _held(self, intent: Intent, item: dict[str, Any], token: str, *, inherited: bool) -> Lock:
        return Lock(
            intent,
            token,
            inherited=inherited,
            expires_at=int(item[A.EXPIRY]["N"]),
            since=_since(item, default=int(time.time())),
            attempts=int(item.get(A.ATTEMPTS, {}).get("N", "0")),
            reservation=Reservation.from_attributes(item),
        )

    def _lock_attributes(
        self, intent: Intent, token: str, now: float, lock_seconds: float, *, since: int
    ) -> dict[str, Any]:
        """A lock's token and expiry, and what the settler needs: it finds the intent once the lock has expired
        and SETTLE_AFTER_SECONDS more have passed (a crash leaves no other trace)."""
        lock_expiry = now + lock_seconds
        unsettled = {"caller": intent.caller, "key": intent.key, "since": since, "request": intent.request}
        return {
            A.TOKEN: {"S": token},
            A.LOCK_EXPIRY: {"N": str(int(lock_expiry * 1000))},
            A.INTENT: {"S": json.dumps(unsettled, sort_keys=True, separators=(",", ":"))},
            A.QUEUE: {"S": DUE},
            A.SETTLE_AT: {"N": str(int(lock_expiry) + self._settle_after_seconds)},
        }

    def _unavailable(self, error: StoreUnavailable, held: Lock) -> Problem:
        """The lock write failed. If it may have landed, drop that lock at once, keeping the fingerprint: the same
        body may retry at once, and the settler finds it if nobody does."""
        problem = _store_problem(error, KeyState.BOUND if error.landed else KeyState.RELEASED)
        if error.landed:
            self.mark_unknown(held, after_store_failure=True)
        return problem

    # --- after the upstream answered ------------------------------------------------------------------------------

    def complete(self, lock: Lock, link: dict[str, Any]) -> None:
        """COMPLETED with the link, and the link's owner recorded, in one transaction that only completes the lock
        this request holds. `OwnedByAnother` when the link id is already another caller's; `LockLost`;
        `StoreUnavailable`: nothing was written; the lock and the fingerprint stand (the link exists, and the same
        body gets it again from the upstream), and the caller decides whether there is time to drop the lock."""
        data = json.dumps(link, sort_keys=True)
        expires_at = int(time.time()) + self._ttl_seconds
        complete = self._if_held(
            lock,
            "SET #data = :data, #expiry = :expiry, #status = :completed REMOVE #intent, #queue, #settle_at",
            names={
                "#data": A.DATA,
                "#expiry": A.EXPIRY,
                "#intent": A.INTENT,
                "#queue": A.QUEUE,
                "#settle_at": A.SETTLE_AT,
            },
            values={":data": {"S": data}, ":expiry": {"N": str(expires_at)}, ":completed": {"S": COMPLETED}},
        )
        try:
            self._transact([{"Update": complete}, self._owners.put(link, lock.intent.caller, lock.intent.key)])
        except _Cancelled as cancelled:
            # Not the lock's condition, so the owner record's.
            raise LockLost() if cancelled.failed[0] else OwnedByAnother() from None
        except (ClientError, BotoCoreError, StoreUnavailable) as exc:
            raise _store_error(exc) from None
        self._completed_now(lock.intent.record_id, lock.intent.fingerprint, data, expires_at)

    def release(self, lock: Lock) -> KeyState:
        """Nothing was made: delete the record, and give the reservation back in the same write. Should the write
        fail, the record stays bound (its lock expires, and the settler resends it)."""
        delete = self._if_held(lock)
        give_back = self._limits.give_back(lock.reservation) if lock.reservation else []
        try:
            if give_back:
                self._transact([{"Delete": delete}, *give_back])
            else:
                self._client.delete_item(**delete)
        except (_Cancelled, ClientError, BotoCoreError, StoreUnavailable) as exc:
            _log_failed_write("the key could not be released", exc)
            return KeyState.BOUND
        logger.info("idempotency key released", extra={"intent_state": "released"})
        return KeyState.RELEASED

    def mark_unknown(
        self, lock: Lock, *, settle_in: float | None = None, resent: bool = False, after_store_failure: bool = False
    ) -> KeyState:
        """A link may exist: drop the lock, keep the fingerprint, and queue the intent for the settler in
        `settle_in` seconds (SETTLE_AFTER_SECONDS unless given). Once that would pass the record's expiry the
        intent is stranded instead: out of the settler's queue, kept for operators (STRANDED_RETENTION_SECONDS).
        `after_store_failure`: the write before this one failed and was logged (at ERROR): this one failing too is
        the same failure, a WARNING."""
        now = time.time()
        settle_at = int(now + (self._settle_after_seconds if settle_in is None else settle_in))
        stranded = settle_at + STRAND_MARGIN_SECONDS >= lock.expires_at
        expires_at = lock.expires_at + STRANDED_RETENTION_SECONDS if stranded else lock.expires_at
        attempts = lock.attempts + (1 if resent else 0)
        update = self._if_held(
            lock,
            "SET #lock_expiry = :expired, #queue = :queue, #settle_at = :settle_at, #attempts = :attempts,"
            " #expiry = :expiry",
            names={
                "#lock_expiry": A.LOCK_EXPIRY,
                "#queue": A.QUEUE,
                "#settle_at": A.SETTLE_AT,
                "#attempts": A.ATTEMPTS,
                "#expiry": A.EXPIRY,
            },
            values={
                ":expired": {"N": "0"},
                ":queue": {"S": STRANDED if stranded else DUE},
                ":settle_at": {"N": str(settle_at)},
                ":attempts": {"N": str(attempts)},
                ":expiry": {"N": str(expires_at)},
            },
        )
        try:
            self._client.update_item(**update)
        except (ClientError, BotoCoreError) as exc:
            _log_failed_write("the lock could not be dropped", exc, again=after_store_failure)
            return KeyState.BOUND
        if stranded:
            logger.error("intent stranded: its outcome is still unknown", extra={"intent_state": "stranded"})
        else:
            logger.warning("idempotency key kept bound", extra={"intent_state": "unknown"})
        return KeyState.BOUND

    def spend(self, lock: Lock, problem: Problem) -> KeyState:
        """The key will never make a link: keep `problem` to answer every retry with, and leave the settler's
        queue. The reservation is kept (a link existed, if briefly)."""
        body = {name: value for name, value in problem.to_dict().items() if name != "key_state"}
        update = self._if_held(
            lock,
            "SET #status = :spent, #problem = :problem, #expiry = :expiry REMOVE #intent, #queue, #settle_at",
            names={
                "#problem": A.PROBLEM,
                "#expiry": A.EXPIRY,
                "#intent": A.INTENT,
                "#queue": A.QUEUE,
                "#settle_at": A.SETTLE_AT,
            },
            values={
                ":spent": {"S": SPENT},
                ":problem": {"S": json.dumps(body, sort_keys=True)},
                ":expiry": {"N": str(int(time.time()) + self._ttl_seconds)},
            },
        )
        try:
            self._client.update_item(**update)
        except (ClientError, BotoCoreError) as exc:
            _log_failed_write("the spent key could not be recorded", exc)
            return KeyState.BOUND
        return KeyState.SPENT

    def _if_held(
        self,
        lock: Lock,
        update: str | None = None,
        *,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A write of the intent's record that applies only while `lock` is still the record's lock."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {A.ID: {"S": lock.intent.record_id}},
            "ConditionExpression": "#status = :inprogress AND #token = :token",
            "ExpressionAttributeNames": {"#status": A.STATUS, "#token": A.TOKEN, **(names or {})},
            "ExpressionAttributeValues": {
                ":inprogress": {"S": IN_PROGRESS},
                ":token": {"S": lock.token},
                **(values or {}),
            },
        }
        if update:
            request["UpdateExpression"] = update
        return request

    # --- the settler's side ----------------------------------------------------------------------------------------

    def due(self, *, limit: int) -> list[DueIntent]:
        """The intents due for settling, the longest due first, at most `limit`: one query of the sparse index,
        whose cost follows what it returns (never a scan)."""
        try:
            answer = self._client.query(
                TableName=self._table,
                IndexName=SETTLE_INDEX,
                KeyConditionExpression="#queue = :due AND #settle_at <= :now",
                ExpressionAttributeNames={"#queue": A.QUEUE, "#settle_at": A.SETTLE_AT},
                ExpressionAttributeValues={":due": {"S": DUE}, ":now": {"N": str(int(time.time()))}},
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(exc) from None
        return [
            DueIntent(
                record_id=item[A.ID]["S"],
                token=item.get(A.TOKEN, {}).get("S", ""),
                since=_since(item, default=0),
                item=item,
            )
            for item in answer.get("Items", [])
        ]

    def take_over_due(self, due: DueIntent, *, lock_seconds: float) -> Lock | None:
        """Lock a due intent for the settler, exactly as its caller's retry would (the same condition: unsettled,
        its lock expired, and unchanged since the index was read); None when a caller or another run was first,
        or it was settled meanwhile."""
        item = due.item
        unsettled = json.loads(item[A.INTENT]["S"])
        intent = Intent.of(unsettled["caller"], unsettled["key"], unsettled["request"])
        if intent.record_id != due.record_id or intent.fingerprint != item[A.VALIDATION]["S"]:
            logger.error("a queued intent does not match its record; left for operators")
            return None
        try:
            return self._take_over(intent, item, lock_seconds)
        except RequestInProgress:
            return None

    def strand(self, due: DueIntent) -> bool:
        """Move a due intent that is about to expire unsettled to the stranded intents, for operators, without
        sending anything (the settler is halted, or out of time); False when it changed meanwhile."""
        item = due.item
        try:
            self._client.update_item(
                TableName=self._table,
                Key={A.ID: {"S": due.record_id}},
                UpdateExpression="SET #queue = :stranded, #expiry = :expiry",
                ConditionExpression="#status = :inprogress AND #token = :token AND #lock < :now_ms",
                ExpressionAttributeNames={
                    "#queue": A.QUEUE,
                    "#expiry": A.EXPIRY,
                    "#status": A.STATUS,
                    "#token": A.TOKEN,
                    "#lock": A.LOCK_EXPIRY,
                },
                ExpressionAttributeValues={
                    ":stranded": {"S": STRANDED},
                    ":expiry": {"N": str(int(item[A.EXPIRY]["N"]) + STRANDED_RETENTION_SECONDS)},
                    ":inprogress": {"S": IN_PROGRESS},
                    ":token": {"S": due.token},
                    ":now_ms": {"N": str(int(time.time() * 1000))},
                },
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise _store_error(exc) from None
        except BotoCoreError as exc:
            raise _store_error(exc) from None
        logger.error("intent stranded: its outcome is still unknown", extra={"intent_state": "stranded"})
        return True

    @staticmethod
    def expiring(due: DueIntent) -> bool:
        """Whether a due intent has too little time left to wait for another settler run."""
        return int(due.item[A.EXPIRY]["N"]) - time.time() < STRAND_MARGIN_SECONDS

    def stranded_count(self) -> int:
        """How many intents are stranded: a query of the index's stranded partition, counted, not read (one page
        per megabyte of index entries, so one while there are fewer than a few thousand)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": SETTLE_INDEX,
            "KeyConditionExpression": "#queue = :stranded",
            "ExpressionAttributeNames": {"#queue": A.QUEUE},
            "ExpressionAttributeValues": {":stranded": {"S": STRANDED}},
            "Select": "COUNT",
        }
        count = 0
        while True:
            try:
                answer = self._client.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise _store_error(exc) from None
            count += int(answer.get("Count", 0))
            if "LastEvaluatedKey" not in answer:
                return count
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    # --- the replay cache ------------------------------------------------------------------------------------------

    def _cached_replay(self, intent: Intent) -> Created | None:
        """A completed intent replayed from memory, with no DynamoDB call (its fingerprint still checked)."""
        cached = self._completed.get(intent.record_id)
        if cached is None:
            return None
        validation, data, expires_at = cached
        if expires_at < time.time():
            del self._completed[intent.record_id]
            return None
        if validation != intent.fingerprint:
            raise IdempotencyKeyReused("This idempotency key was already used with a different request.").bound_to(
                KeyState.BOUND
            )
        self._completed.move_to_end(intent.record_id)
        return Created(link=json.loads(data), replayed=True)

    def _remember(self, item: dict[str, Any]) -> None:
        self._completed_now(item[A.ID]["S"], item[A.VALIDATION]["S"], item[A.DATA]["S"], int(item[A.EXPIRY]["N"]))

    def _completed_now(self, record_id: str, validation: str, data: str, expires_at: int) -> None:
        self._completed[record_id] = (validation, data, expires_at)
        self._completed.move_to_end(record_id)
        while len(self._completed) > LOCAL_CACHE_ITEMS:
            self._completed.popitem(last=False)

    # --- transactions ----------------------------------------------------------------------------------------------

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """One TransactWriteItems, retried (briefly) when it met another transaction on the same items: it was then
        not applied. `_Cancelled` says which entries' conditions failed."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                self._client.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or [{} for _ in items]
                codes = [reason.get("Code", "None") for reason in reasons]
                if "ConditionalCheckFailed" in codes:
                    raise _Cancelled(reasons) from None
                if attempt == TRANSACTION_ATTEMPTS or "TransactionConflict" not in codes:
                    raise StoreUnavailable("TransactionCanceled:" + ",".join(codes), landed=False) from None
                time.sleep(random.uniform(0.01, 0.05 * attempt))


class _Cancelled(Exception):
    """A transaction refused by a condition (at least one: `_transact` raises it for no other cancellation):
    `failed[i]` for entry i, and the item it found (when asked for)."""

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction canceled")
        self.failed = [reason.get("Code") == "ConditionalCheckFailed" for reason in reasons]
        self.items: list[dict[str, Any] | None] = [reason.get("Item") for reason in reasons]


def _since(item: dict[str, Any], *, default: int) -> int:
    """When an unsettled intent was first locked, as its record says (`default` for a record without one)."""
    if A.INTENT not in item:
        return default
    return int(json.loads(item[A.INTENT]["S"]).get("since", default))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _store_error(error: Exception) -> StoreUnavailable:
    """What a failed write says: its error code (never the SDK's text, which can name the account and role), and
    whether it may have landed. A timeout or a server error may have; a refusal did not, unless botocore had
    retried the call: the code is the last attempt's, and an earlier one may have landed unanswered."""
    if isinstance(error, StoreUnavailable):
        return error
    if isinstance(error, ClientError):
        code = _code(error)
        retried = int(error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0
        return StoreUnavailable(code, landed=retried or code not in _NOT_APPLIED)
    return StoreUnavailable(type(error).__name__, landed=True)


def _store_problem(error: StoreUnavailable, key_state: KeyState) -> Problem:
    logger.error("idempotency store failed", extra={"store_error": error.code})
    retry = "retry with the same key" if key_state is KeyState.BOUND else "retry"
    problem = DependencyUnavailable(f"The idempotency store is unavailable; {retry}.", dependency=Dependency.DYNAMODB)
    return problem.bound_to(key_state)


def _log_failed_write(what: str, error: Exception, *, again: bool = False) -> None:
    """A write after the lock that failed: an ERROR, unless the store's failure was logged already (`again`)."""
    if isinstance(error, (LockLost, _Cancelled)) or (
        isinstance(error, ClientError) and _code(error) == "ConditionalCheckFailedException"
    ):
        logger.warning("the record is not this request's lock; it is left as it is")
        return
    log = logger.warning if again else logger.error
    log(f"{what}; the lock expires with the function", extra={"store_error": _store_error(error).code})


def _in_progress() -> Problem:
    return RequestInProgress("A request with this idempotency key is still being processed; retry later.").bound_to(
        KeyState.BOUND
    )


def _spent_problem(item: dict[str, Any]) -> Problem:
    """The problem a spent key was refused with, answered again."""
    stored = json.loads(item.get(A.PROBLEM, {}).get("S", "{}"))
    return Problem.restored(stored).bound_to(KeyState.SPENT)
