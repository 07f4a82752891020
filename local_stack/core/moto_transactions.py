"""DynamoDB transactions in the embedded moto server that hold up under load, as DynamoDB's do.

moto (5.2) backs up every table a TransactWriteItems touches with a deep copy of the whole table, to put it back
if the transaction fails. Each copy costs time in proportion to the table, stays reachable from moto's instance
tracking (memory grows with every transaction), and races other threads writing the same table (an HTTP 500,
"dictionary changed size during iteration"). A function that writes with a transaction on every request slowed,
over a long local run or a burst of concurrent requests, until its DynamoDB calls timed out.

`patch()` keeps moto's transaction logic and changes only its backup: transactions run one at a time, each saves
just the items it names, and puts those back if it fails. The outcome is the same all-or-nothing one, at the cost
of the items rather than of the tables.
"""

from __future__ import annotations

import copy
import threading
from types import ModuleType
from typing import Any

_PATCHED = "_local_stack_item_backups"


def patch() -> None:
    """Apply once to this process's moto DynamoDB backend (the embedded server's); later calls do nothing."""
    from moto.dynamodb import models

    if getattr(models.DynamoDBBackend, _PATCHED, False):
        return
    from moto.dynamodb.models.table import Table

    models.copy = _TablesNotCopied(Table)  # type: ignore[attr-defined]  # moto's module-level `copy`
    transact = models.DynamoDBBackend.transact_write_items
    one_at_a_time = threading.Lock()

    def transact_write_items(backend: models.DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with one_at_a_time:
            saved = [_saved_item(backend, operation) for operation in transact_items]
            try:
                transact(backend, transact_items)
            except Exception:
                for table_name, key, attributes in filter(None, saved):
                    _restore(backend, table_name, key, attributes)
                raise

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
