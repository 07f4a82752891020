"""Exactly one payout link per intent.

An intent (`Intent`) is one caller's request under one idempotency key. Powertools idempotency keeps one DynamoDB
record per (caller, key): an INPROGRESS lock that expires with the function's remaining time, then the COMPLETED
response for the TTL. The record's validation hash is the fingerprint of the request, so reusing a key for a
different request is refused. `IntentStore` holds that record to the outcome rules of outcomes.py: a key whose
create may have made a link stays bound to its fingerprint, even once its lock has expired.

Every attempt also sends the upstream a key derived from (caller, key, fingerprint): a retry of the same request
then gets the link the upstream already made instead of a second one, and a link made for one body can never be
handed back for another, even after our record is gone.

The record's id (`payout-link#` and the hash of caller and key), its validation hash and the derived upstream key
are fixed forever: records written by one deploy must be found by the next (tests/integration/test_stored_records.py
holds their golden values)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemAlreadyExistsError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS, DataRecord
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer
from botocore.exceptions import BotoCoreError, ClientError

from payout_links.observability import logger
from payout_links.outcomes import IntentState, Outcome, outcome_of
from payout_links.owners import LinkOwners
from payout_links.problems import InvalidIdempotencyKey

# Fixed forever: changing it changes every derived upstream key, and with it the upstream's deduplication.
UPSTREAM_KEY_NAMESPACE = uuid.UUID("5d0f7a52-1b8e-4c53-9a3e-2f6c1d9b7e40")
RECORD_KEY_PREFIX = "payout-link"
LOCAL_CACHE_ITEMS = 512  # a few hundred small JSON bodies: well under a megabyte
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,255}")
# A UUID as people write it: hyphenated or as 32 hex digits, braced or not, as a `urn:uuid:` or not, in any case.
# This covers every spelling the body's `idempotency_key` accepts (and a few more that a header may carry).
_UUID_SPELLINGS = re.compile(
    r"(?:urn:uuid:)?(?:\{(?P<braced>[0-9a-f-]{32,36})\}|(?P<bare>[0-9a-f-]{32,36}))", re.IGNORECASE
)
_UUID_DIGITS = re.compile(r"[0-9a-f]{8}(-?)[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{12}", re.IGNORECASE)


def parse_key_header(header: str | None) -> str | None:
    """The `Idempotency-Key` header, bare or as a quoted string; None when absent."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return _checked(value, "The Idempotency-Key header")


def resolve_key(
    header_key: str | None,
    body_key: uuid.UUID | None,
    *,
    header: str = "Idempotency-Key header",
    body: str = "body's idempotency_key",
) -> str:
    """The one key of the request: from the header, from the body, or from both when they agree."""
    if body_key is not None:
        if header_key is not None and header_key != str(body_key):
            raise InvalidIdempotencyKey(f"The {header} and the {body} differ.")
        return str(body_key)
    if header_key is None:
        raise InvalidIdempotencyKey(
            "An idempotency key is required: send an Idempotency-Key header or a body idempotency_key."
        )
    return header_key


def frontend_key(header: str | None, body_key: uuid.UUID | None) -> str:
    """A frontend's key: the `Idempotency-Key` header or the body's `idempotency_key` (equal when both)."""
    return resolve_key(parse_key_header(header), body_key)


def webhook_key(webhook_id: str, body_key: uuid.UUID | None) -> str:
    """A partner event's key: its `webhook-id`, which partners keep when they re-deliver. A `data.idempotency_key`
    is optional and, when sent, must name the same key."""
    key = _checked(webhook_id, "The webhook-id header")
    return resolve_key(key, body_key, header="webhook-id header", body="event's data.idempotency_key")


def _checked(key: str, source: str) -> str:
    if not _VISIBLE_ASCII.fullmatch(key):
        raise InvalidIdempotencyKey(f"{source} must be 1 to 255 visible ASCII characters.")
    return _canonical(key)


def _canonical(key: str) -> str:
    """A UUID, in any spelling the body accepts, becomes its one standard spelling (hyphenated, lower case), so
    that the header and the body name the same intent however it was written. Other keys stay as they are."""
    spelled = _UUID_SPELLINGS.fullmatch(key)
    digits = spelled and (spelled["braced"] or spelled["bare"])
    return str(uuid.UUID(digits)) if digits and _UUID_DIGITS.fullmatch(digits) else key


def fingerprint(request: dict[str, Any]) -> str:
    """The request's fingerprint: sha256 of its canonical JSON, the same digest Powertools would take of it for the
    record's validation hash (`json.dumps(..., sort_keys=True)` with the configured sha256)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def upstream_key(caller: str, key: str, request_fingerprint: str) -> str:
    """The idempotency key the upstream gets for an intent: the same for every attempt, distinct per caller, and
    distinct per request, so that a link made for one body is never handed back for another (the upstream
    itself returns the first link for a known key whatever the new body says)."""
    return str(uuid.uuid5(UPSTREAM_KEY_NAMESPACE, json.dumps([caller, key, request_fingerprint])))


# What each field of an intent is to its idempotency record (see `Intent`).
_PART = "idempotency"
_RECORD_KEY = "record key"
_VALIDATED = "validated"


@dataclass(frozen=True)
class Intent:
    """One caller's request under one idempotency key: what is created at most once. Build it with `Intent.of`.

    Powertools reads it as a dict (`dataclasses.asdict`). The record's id is the hash of the fields marked as the
    record key, as a JSON list in their order; its validation hash is the hash of the field marked as validated,
    which the intent carries as `fingerprint`, computed once: the store takes it from there (see `IntentStore`),
    and the upstream key is derived from it. The JMESPath expressions Powertools is configured with are built
    from these fields' names."""

    caller: str = field(metadata={_PART: _RECORD_KEY})
    key: str = field(metadata={_PART: _RECORD_KEY})
    # The canonical request: what is forwarded upstream, and what the fingerprint is taken of.
    request: dict[str, Any] = field(metadata={_PART: _VALIDATED})
    fingerprint: str

    @classmethod
    def of(cls, caller: str, key: str, request: dict[str, Any]) -> Intent:
        return cls(caller=caller, key=key, request=request, fingerprint=fingerprint(request))

    @property
    def upstream_key(self) -> str:
        return upstream_key(self.caller, self.key, self.fingerprint)


def _fields_marked(part: str) -> list[str]:
    return [each.name for each in fields(Intent) if each.metadata.get(_PART) == part]


RECORD_KEY_JMESPATH = "[" + ", ".join(_fields_marked(_RECORD_KEY)) + "]"
(VALIDATION_JMESPATH,) = _fields_marked(_VALIDATED)


@dataclass(frozen=True)
class Created:
    link: dict[str, Any]
    replayed: bool = False


class IntentOperation(Protocol):
    """What runs at most once per intent: the create at the upstream, given the time it must end by."""

    def __call__(self, *, intent: Intent, deadline: float) -> Created: ...


class _CreatedSerializer(BaseIdempotencySerializer):
    """Stores only the link; what comes back from the store is, by definition, a replay."""

    def to_dict(self, data: Created) -> dict[str, Any]:
        return data.link

    def from_dict(self, data: dict[str, Any]) -> Created:
        return Created(link=data)


def _mark_replayed(response: Created, idempotent_data: DataRecord) -> Created:
    return replace(response, replayed=True)


class IntentStore(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB persistence layer, held to the outcome rules of outcomes.py. Six changes:

    1. An expired lock (a crash, a Lambda timeout, or an UNKNOWN outcome) may be taken over only by a request with
       the same fingerprint. Powertools lets any request overwrite it, which would let another body take a key
       whose link may exist; here that request reads the record and gets 422 instead.
    2. Every lock write carries a fresh token. When the write lands but its answer is lost and botocore retries
       it, the retry finds a record with our own token: the request holds the lock, it is not "in progress".
    3. A create that fails releases (deletes) the record only when nothing was created for certain, by this
       request and by any before it: a request that took over an expired lock inherits its UNKNOWN outcome, so
       it never releases. Otherwise the record keeps its fingerprint and only the lock is dropped, so the same
       body can retry at once. Powertools deletes the record on any exception.
    4. A lock write that fails after it may have landed (its answers timed out) drops that lock at once, keeping
       the fingerprint, instead of leaving the caller at 409 until the function's timeout.
    5. Completing writes the link's owner record in the same transaction (see owners.py), and only completes the
       lock this request holds; a completion that fails drops the lock at once, as in 4.
    6. The validation hash is the fingerprint the intent carries, taken once per request, not the hash of the
       intent's request taken again at each step (the lock, a record read, the completion); it is the same digest.

    Releasing and dropping touch only the lock this request holds (its token); should either fail, the lock
    expires with the function and the record stays bound, and the caller hears about the create, not about this.
    """

    TOKEN_ATTR = "lock_token"  # noqa: S105 - an attribute name
    OUTCOME_ATTR = "outcome"

    def __init__(self, *, table_name: str, boto3_client: Any, owners: LinkOwners) -> None:
        super().__init__(table_name=table_name, boto3_client=boto3_client)
        self._owners = owners
        self._owner_put: dict[str, Any] = {}
        # The lock this container holds (one request at a time): its token, and whether it took over a record that
        # was already bound (then no failure of this request may release the key).
        self._token: str | None = None
        self._inherited_unknown = False

    def _put_record(self, data_record: DataRecord) -> None:
        token = uuid.uuid4().hex
        item = {
            **self._get_key(data_record.idempotency_key),
            self.expiry_attr: {"N": str(data_record.expiry_timestamp)},
            self.status_attr: {"S": data_record.status},
            self.validation_key_attr: {"S": data_record.payload_hash},
            self.TOKEN_ATTR: {"S": token},
        }
        if data_record.in_progress_expiry_timestamp is not None:
            item[self.in_progress_expiry_attr] = {"N": str(data_record.in_progress_expiry_timestamp)}
        now = time.time()
        self._token, self._inherited_unknown = token, True  # until the write says otherwise
        try:
            replaced = self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(#id) OR #expiry < :now"
                    " OR (#status = :inprogress AND #lock_expiry < :now_ms AND #validation = :validation)"
                ),
                ExpressionAttributeNames={
                    "#id": self.key_attr,
                    "#expiry": self.expiry_attr,
                    "#status": self.status_attr,
                    "#lock_expiry": self.in_progress_expiry_attr,
                    "#validation": self.validation_key_attr,
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":now_ms": {"N": str(int(now * 1000))},
                    ":inprogress": {"S": STATUS_CONSTANTS["INPROGRESS"]},
                    ":validation": {"S": data_record.payload_hash},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            if not _condition_failed(exc):
                self._drop_lock(data_record.idempotency_key)  # it may have landed: never leave it locked
                raise
            existing = exc.response.get("Item")
            if existing is None:
                raise IdempotencyItemAlreadyExistsError() from exc
            if existing.get(self.TOKEN_ATTR) == {"S": token}:
                return  # our own write, answered late and retried by botocore: what it replaced is not known
            record = self._item_to_data_record(existing)
            self._validate_payload(data_payload=data_record, stored_data_record=record)  # another body: 422
            self._save_to_cache(data_record=record)
            raise IdempotencyItemAlreadyExistsError(old_data_record=record) from exc
        previous = replaced.get("Attributes")
        # The condition let the write replace a live record only if it was an expired lock of the same request.
        self._inherited_unknown = previous is not None and int(previous[self.expiry_attr]["N"]) >= int(now)

    def _get_hashed_payload(self, data: dict[str, Any]) -> str:
        """The intent's fingerprint, which `data` (the intent as a dict) carries: what Powertools would compute by
        hashing the part VALIDATION_JMESPATH selects, the request."""
        if not self.payload_validation_enabled:
            return ""
        return Intent(**data).fingerprint

    def save_success(self, data: dict[str, Any], result: dict[str, Any]) -> None:
        """Called by Powertools with the intent (as a dict) and the created link: COMPLETED, and the link's owner,
        the intent's caller, recorded in one write."""
        self._owner_put = self._owners.put(result, Intent(**data).caller, Intent(**data).key)
        super().save_success(data, result)

    def _update_record(self, data_record: DataRecord) -> None:
        """The record becomes COMPLETED and the link's owner record is written, in one transaction that only
        completes the lock this request holds. Should it fail, the lock is dropped at once and the fingerprint
        kept (the link exists, so the outcome is UNKNOWN): the same body retries at once, gets the same link from
        the upstream (the derived key) and completes it, instead of waiting for the lock to expire."""
        complete = self._if_own_lock(
            names={
                "#response_data": self.data_attr,
                "#expiry": self.expiry_attr,
                "#validation": self.validation_key_attr,
            },
            values={
                ":response_data": {"S": data_record.response_data},
                ":expiry": {"N": str(data_record.expiry_timestamp)},
                ":completed": {"S": data_record.status},
                ":validation": {"S": data_record.payload_hash},
            },
        )
        complete["Key"] = self._get_key(data_record.idempotency_key)
        complete["UpdateExpression"] = (
            "SET #response_data = :response_data, #expiry = :expiry, #status = :completed, #validation = :validation"
        )
        try:
            self.client.transact_write_items(TransactItems=[{"Update": complete}, self._owner_put])
        except (ClientError, BotoCoreError) as exc:
            # A transport error (a timeout, a dropped connection) has no response at all.
            answer = getattr(exc, "response", None) or {}
            reasons = [reason.get("Code") for reason in answer.get("CancellationReasons", [])]
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                logger.error(
                    "the link is already recorded for another owner", extra={"intent_state": IntentState.UNKNOWN}
                )
            self._drop_lock(data_record.idempotency_key)
            raise

    def delete_record(self, data: dict[str, Any], exception: Exception) -> None:
        """Called by Powertools when the create raised: RELEASED or UNKNOWN, by the one rule in outcomes.py."""
        idempotency_key = self._get_hashed_idempotency_key(data=data)
        assert idempotency_key is not None  # raise_on_no_idempotency_key is set
        if outcome_of(exception) is Outcome.NOT_CREATED and not self._inherited_unknown:
            with _store_errors_logged("the key could not be released"), _unless_lock_lost():
                self.client.delete_item(Key=self._get_key(idempotency_key), **self._if_own_lock())
            logger.info("idempotency key released", extra={"intent_state": IntentState.RELEASED})
        else:
            self._drop_lock(idempotency_key)
            logger.warning("idempotency key kept bound", extra={"intent_state": IntentState.UNKNOWN})

    def _drop_lock(self, idempotency_key: str) -> None:
        """Drop this request's lock and keep the fingerprint: the same body may lock it again at once."""
        with _store_errors_logged("the lock could not be dropped"), _unless_lock_lost():
            self.client.update_item(
                Key=self._get_key(idempotency_key),
                UpdateExpression="SET #lock_expiry = :expired, #outcome = :unknown",
                **self._if_own_lock(
                    names={"#lock_expiry": self.in_progress_expiry_attr, "#outcome": self.OUTCOME_ATTR},
                    values={":expired": {"N": "0"}, ":unknown": {"S": Outcome.UNKNOWN.value}},
                ),
            )

    def _if_own_lock(
        self, *, names: dict[str, str] | None = None, values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The table and condition for a write that must only touch the lock this container holds: a lock that
        expired and was taken by another request of the same intent is not ours to release."""
        return {
            "TableName": self.table_name,
            "ConditionExpression": "#status = :inprogress AND #token = :token",
            "ExpressionAttributeNames": {"#status": self.status_attr, "#token": self.TOKEN_ATTR, **(names or {})},
            "ExpressionAttributeValues": {
                ":inprogress": {"S": STATUS_CONSTANTS["INPROGRESS"]},
                ":token": {"S": self._token or ""},
                **(values or {}),
            },
        }


def _condition_failed(error: Exception) -> bool:
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") == (
        "ConditionalCheckFailedException"
    )


@contextlib.contextmanager
def _unless_lock_lost() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        if not _condition_failed(exc):
            raise
        logger.warning("the record is not this request's lock; it is left as it is")


@contextlib.contextmanager
def _store_errors_logged(what: str) -> Iterator[None]:
    """Log a failed store write instead of raising it: the lock expires with the function anyway, and the record
    stays bound until then, so the caller is better served by the create's own answer."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        logger.error(f"{what}; the lock expires with the function", extra={"store_error": str(exc)})


def intent_config(*, ttl_seconds: int) -> IdempotencyConfig:
    """How Powertools keeps intents: the record key is the hash of caller and key, the validation hash the
    request's fingerprint, a COMPLETED record is replayed (marked so) for `ttl_seconds`. Each invocation registers
    its Lambda context on it, so that a lock expires with the function."""
    return IdempotencyConfig(
        event_key_jmespath=RECORD_KEY_JMESPATH,
        payload_validation_jmespath=VALIDATION_JMESPATH,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
        hash_function="sha256",
        response_hook=_mark_replayed,
        # A replay in the same container is then served from memory, with no DynamoDB call. Only COMPLETED
        # records are cached, with their expiry, and a cached hit still has its fingerprint checked.
        use_local_cache=True,
        local_cache_max_items=LOCAL_CACHE_ITEMS,
    )


def once_per_intent(operation: IntentOperation, *, store: IntentStore, config: IdempotencyConfig) -> IntentOperation:
    """`operation`, run at most once per intent: a later call for the same intent gets the first call's `Created`,
    replayed; one for the same caller and key with another request is refused (`IdempotencyValidationError`)."""
    once: IntentOperation = idempotent_function(
        operation,
        data_keyword_argument="intent",  # the keyword `IntentOperation` takes the intent by
        persistence_store=store,
        config=config,
        output_serializer=_CreatedSerializer(),
        key_prefix=RECORD_KEY_PREFIX,
    )
    return once
