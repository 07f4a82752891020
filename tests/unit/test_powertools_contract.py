"""What the proxy relies on from the installed Powertools beyond its documented Logger and Metrics, checked in the
fast loop against the pinned version.

The idempotency store is the proxy's own: it subclasses nothing of Powertools and calls none of its idempotency
code. What is left is a shared record format and two module flags, listed in store.py's docstring ("Powertools")
and checked here, one check each:

- attribute names: the defaults of `DynamoDBPersistenceLayer.__init__` (documented) are the store's;
- status values: `STATUS_CONSTANTS` (documented record states) holds the store's INPROGRESS and COMPLETED;
- digests: `_get_hashed_idempotency_key` and `_get_hashed_payload` (undocumented) give the store's record id and
  fingerprint for the same intent;
- read back: `_item_to_data_record` (undocumented) reads the store's COMPLETED item as the link it holds;
- cold-start flags: the `is_cold_start` flags of Powertools' logger and metrics modules (undocumented), which
  `service.reset()` sets for tests.

`breaches()` lists every way the installed Powertools differs from that list. The pinned version has none; each
change an upgrade could make (a renamed hook, another default, another hash, a moved flag) is applied to a
monkeypatched Powertools below and must be reported. The same contract runs end to end against moto in
tests/integration/test_stored_records.py (a record the store completes, read through Powertools' `get_record`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.logging import logger as powertools_logger
from aws_lambda_powertools.metrics.provider import cold_start
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.persistence import base, datarecord
from boto3.dynamodb.types import TypeSerializer

from payout_links.intent import RECORD_KEY_PREFIX, Intent
from payout_links.store import COMPLETED, IN_PROGRESS, A

pytestmark = pytest.mark.unit

# The store's attribute for each of Powertools' attribute-name parameters.
ATTRIBUTES = {
    "key_attr": A.ID,
    "expiry_attr": A.EXPIRY,
    "in_progress_expiry_attr": A.LOCK_EXPIRY,
    "status_attr": A.STATUS,
    "data_attr": A.DATA,
    "validation_key_attr": A.VALIDATION,
}
INTENT = Intent.of("user:contract", "contract-key-0001", {"amount": 2500, "delivery": {"method": "link"}})
LINK = {"id": "5c1b0a40-0000-4000-8000-000000000001", "status": "created", "amount": 2500}


def persistence_as_the_proxy_configured_it() -> DynamoDBPersistenceLayer:
    layer = DynamoDBPersistenceLayer(table_name="contract-table", boto3_client=object())  # type: ignore[arg-type]
    layer.configure(
        IdempotencyConfig(
            event_key_jmespath="[caller, key]", payload_validation_jmespath="request", hash_function="sha256"
        ),
        key_prefix=RECORD_KEY_PREFIX,
    )
    return layer


def completed_item() -> dict[str, Any]:
    """A COMPLETED item as the store leaves it (store.py's completion), in DynamoDB's wire format."""
    serialize = TypeSerializer().serialize
    values = {
        A.ID: INTENT.record_id,
        A.STATUS: COMPLETED,
        A.VALIDATION: INTENT.fingerprint,
        A.DATA: json.dumps(LINK),
        A.EXPIRY: 4_102_444_800,
        A.TOKEN: "a-lock-token",
    }
    return {name: serialize(value) for name, value in values.items()}


def _attribute_breaches() -> list[str]:
    parameters = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters
    found = []
    for parameter, attribute in ATTRIBUTES.items():
        default = parameters[parameter].default if parameter in parameters else None
        if default != attribute:
            found.append(f"attribute name: {parameter} defaults to {default!r}, the store writes {attribute!r}")
    return found


def _status_breaches() -> list[str]:
    constants = dict(datarecord.STATUS_CONSTANTS)
    return [
        f"status value: Powertools' {name} is {constants.get(name)!r}, the store writes {ours!r}"
        for name, ours in (("INPROGRESS", IN_PROGRESS), ("COMPLETED", COMPLETED))
        if constants.get(name) != ours
    ]


def _digest_breaches() -> list[str]:
    layer = persistence_as_the_proxy_configured_it()
    data = {"caller": INTENT.caller, "key": INTENT.key, "request": INTENT.request}
    found = []
    for member, ours in (
        ("_get_hashed_idempotency_key", INTENT.record_id),
        ("_get_hashed_payload", INTENT.fingerprint),
    ):
        digest = getattr(layer, member, None)
        if not callable(digest):
            found.append(f"digest: Powertools has no {member}; compare the record ids and hashes by hand")
        elif (theirs := digest(data)) != ours:
            found.append(f"digest: Powertools' {member} gives {theirs!r}, the store uses {ours!r}")
    return found


def _read_back_breaches() -> list[str]:
    layer = persistence_as_the_proxy_configured_it()
    read = getattr(layer, "_item_to_data_record", None)
    if not callable(read):
        return ["read back: Powertools has no _item_to_data_record; read a completed record through get_record"]
    try:
        record = read(completed_item())
        as_read = (record.idempotency_key, record.status, record.payload_hash, record.response_json_as_dict())
    except Exception as error:  # a changed reader fails in any way: that is the breach to report
        return [f"read back: Powertools cannot read the store's completed item: {error!r}"]
    expected = (INTENT.record_id, COMPLETED, INTENT.fingerprint, LINK)
    return [] if as_read == expected else [f"read back: Powertools reads {as_read!r}, the store wrote {expected!r}"]


def _flag_breaches() -> list[str]:
    return [
        f"cold-start flag: {module.__name__}.is_cold_start is gone; service.reset() cannot mark a cold start"
        for module in (powertools_logger, cold_start)
        if not isinstance(getattr(module, "is_cold_start", None), bool)
    ]


def breaches() -> list[str]:
    """Every way the installed Powertools differs from what the proxy relies on (the table above)."""
    return [
        *_attribute_breaches(),
        *_status_breaches(),
        *_digest_breaches(),
        *_read_back_breaches(),
        *_flag_breaches(),
    ]


def test_the_pinned_powertools_keeps_every_part_of_the_contract():
    assert breaches() == []


def _rename(owner: Any, member: str) -> Callable[[pytest.MonkeyPatch], None]:
    def change(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(owner, f"{member}_renamed", getattr(owner, member), raising=False)
        monkeypatch.delattr(owner, member)

    return change


def _other_default(parameter: str, value: str) -> Callable[[pytest.MonkeyPatch], None]:
    def change(monkeypatch: pytest.MonkeyPatch) -> None:
        original = DynamoDBPersistenceLayer.__init__
        signature = inspect.signature(original)
        changed = signature.replace(
            parameters=[p.replace(default=value) if p.name == parameter else p for p in signature.parameters.values()]
        )

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            bound = changed.bind(self, *args, **kwargs)
            bound.apply_defaults()
            original(*bound.args, **bound.kwargs)

        __init__.__signature__ = changed  # type: ignore[attr-defined]
        monkeypatch.setattr(DynamoDBPersistenceLayer, "__init__", __init__)

    return change


def _other_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    def md5(self: Any, data: Any) -> str:
        return hashlib.md5(json.dumps(data, sort_keys=True).encode(), usedforsecurity=False).hexdigest()

    monkeypatch.setattr(base.BasePersistenceLayer, "_generate_hash", md5)


def _other_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datarecord, "STATUS_CONSTANTS", {"INPROGRESS": "IN_PROGRESS", "COMPLETED": "COMPLETED"})


UPGRADES = {
    "the key hook renamed": (_rename(base.BasePersistenceLayer, "_get_hashed_idempotency_key"), "digest: "),
    "the payload hook renamed": (_rename(base.BasePersistenceLayer, "_get_hashed_payload"), "digest: "),
    "the item reader renamed": (_rename(DynamoDBPersistenceLayer, "_item_to_data_record"), "read back: "),
    "another hash": (_other_hash, "digest: "),
    "another status attribute": (_other_default("status_attr", "state"), "attribute name: status_attr"),
    "another data attribute": (_other_default("data_attr", "result"), "attribute name: data_attr"),
    "another in-progress status": (_other_status, "status value: Powertools' INPROGRESS"),
    "the logger's cold-start flag moved": (_rename(powertools_logger, "is_cold_start"), "cold-start flag: "),
    "the metrics' cold-start flag moved": (_rename(cold_start, "is_cold_start"), "cold-start flag: "),
}


@pytest.mark.parametrize("upgrade", UPGRADES)
def test_a_powertools_that_changed_what_the_proxy_relies_on_is_reported(upgrade, monkeypatch):
    change, expected = UPGRADES[upgrade]
    change(monkeypatch)

    found = breaches()

    assert any(line.startswith(expected) for line in found), found
