"""DynamoDB transactions in the embedded moto server that hold up under load, as DynamoDB's do.

moto (5.2) backs up every table a TransactWriteItems touches with a deep copy of the whole table, to put it back
if the transaction fails. Each copy costs time in proportion to the table, stays reachable from moto's instance
tracking (memory grows with every transaction), and races other threads writing the same table (an HTTP 500,
"dictionary changed size during iteration"). A function that writes with a transaction on every request slowed,
over a long local run or a burst of concurrent requests, until its DynamoDB calls timed out.

`patch()` keeps moto's transaction logic and changes only its backup: transactions run one at a time, each saves
just the items it names, and puts those back if it fails. The outcome is the same all-or-nothing one, at the cost
of the items rather than of the tables.

It also honours `ClientRequestToken` as DynamoDB does, which moto ignores: botocore fills one in per call and sends
it again with each retry, so a transaction whose answer came too late for its client (a busy machine) and that
botocore retried is applied once, and the retry answers success instead of failing its own conditions against what
the first attempt wrote. A token is remembered for 10 minutes after its transaction succeeded; the same token with
other items is refused with `IdempotentParameterMismatchException`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from types import ModuleType
from typing import Any

_PATCHED = "_local_stack_item_backups"
TOKEN_LIFETIME_SECONDS = 600


def patch() -> None:
    """Apply once to this process's moto DynamoDB backend (the embedded server's); later calls do nothing."""
    from moto.dynamodb import models

    if getattr(models.DynamoDBBackend, _PATCHED, False):
        return
    from moto.dynamodb.models.table import Table

    models.copy = _TablesNotCopied(Table)  # type: ignore[attr-defined]  # moto's module-level `copy`
    from moto.dynamodb.exceptions import DynamodbException
    from moto.dynamodb.responses import DynamoHandler

    transact = models.DynamoDBBackend.transact_write_items
    one_at_a_time = threading.Lock()
    request = threading.local()  # the token of the request this thread handles
    applied: dict[str, tuple[str, float]] = {}  # token → (the items it applied, when)

    def transact_write_items(backend: models.DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        token = getattr(request, "token", None)
        items = json.dumps(transact_items, sort_keys=True)
        with one_at_a_time:
            now = time.monotonic()
            for old in [old for old, (_, at) in applied.items() if now - at > TOKEN_LIFETIME_SECONDS]:
                del applied[old]
            if token is not None and token in applied:
                if applied[token][0] != items:
                    raise DynamodbException(
                        "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                        "The request uses the same client token as a previous, but non-identical request.",
                    )
                return  # applied already: success, and nothing written twice
            saved = [_saved_item(backend, operation) for operation in transact_items]
            try:
                transact(backend, transact_items)
            except Exception:
                for table_name, key, attributes in filter(None, saved):
                    _restore(backend, table_name, key, attributes)
                raise
            if token is not None:
                applied[token] = (items, now)

    handle = DynamoHandler.transact_write_items

    def transact_write_items_with_token(handler: DynamoHandler) -> Any:
        request.token = handler.body.get("ClientRequestToken")
        try:
            return handle(handler)
        finally:
            request.token = None

    DynamoHandler.transact_write_items = transact_write_items_with_token  # type: ignore[method-assign, assignment]

    # Replacing moto's method is the point of this module; mypy refuses any assignment to a method, and compares
    # the plain function with the method as if bound.
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign, assignment]
    setattr(models.DynamoDBBackend, _PATCHED, True)


class _TablesNotCopied(ModuleType):
    """Stands in for the `copy` module inside moto's backend: `deepcopy` of a whole table returns the table itself
    (the transaction has saved the items it touches instead); every other copy is a real one."""

    def __init__(self, table_type: type) -> None:
        super().__init__("copy")
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, self._table_type) else copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _saved_item(backend: Any, transact_item: dict[str, Any]) -> tuple[str, dict[str, Any], Any] | None:
    """(table, key, the item's attributes or None when absent) for one operation of the transaction; None when
    its table does not exist (moto then refuses the transaction itself)."""
    ((_, operation),) = transact_item.items()
    table_name = operation.get("TableName")
    if table_name not in backend.tables:
        return None
    if "Item" in operation:
        table = backend.get_table(table_name)
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        key = {name: operation["Item"][name] for name in names if name in operation["Item"]}
    else:
        key = operation.get("Key", {})
    try:
        current = backend.get_item(table_name, key)
    except Exception:  # a malformed key: moto refuses the transaction before it writes anything
        return None
    return table_name, key, None if current is None else copy.deepcopy(current.to_json()["Attributes"])


def _restore(backend: Any, table_name: str, key: dict[str, Any], attributes: dict[str, Any] | None) -> None:
    if attributes is not None:
        backend.put_item(table_name, attributes)
    elif backend.get_item(table_name, key) is not None:
        backend.delete_item(table_name, key)
