"""What a fault is: the fields a spec may set, how one is parsed and checked, and the answer it makes.

A fault is queued by `DotsEmulator.inject` (or `POST /_emulator/faults`) and taken by the next payout-link API
requests; the server carries out what it says (delay, drop, answer, trickle), the emulator what it changes in
the real answer (`link_overrides`, `answer_link`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from local_stack.dots_emulator.api import Json, Reply, json_reply

DEFAULT_FAULT_BODY = {"message": "Injected failure"}

FAULT_KEYS = frozenset(
    {
        "status",
        "body",
        "retry_after",
        "raw_body",
        "delay_seconds",
        "drop",
        "after_create",
        "trickle_seconds",
        "link_overrides",
        "answer_link",
        "count",
    }
)


def _field(spec: Json, key: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    """Read an optional fault key, refusing wrong types (and bools posing as numbers)."""
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise ValueError(f"fault {key!r} must be {names}")
    return value


@dataclass
class Fault:
    """A queued misbehaviour for the next `remaining` payout-link API requests (creates, reads or cancels)."""

    status: int | None
    body: Any
    retry_after: str | None
    raw_body: str | None
    delay_seconds: float
    drop: bool
    # Disrupt after the real action (the create, the read or the cancel happened), not before it.
    after_create: bool
    # The real answer's body goes out one byte per `trickle_seconds`: every read is quick, the whole is slow.
    trickle_seconds: float | None
    # Top-level link fields replaced in the answer only: the stored link stays as it is.
    link_overrides: Json | None
    # The id of a stored link that answers the request instead of the real action, which is not taken: a create
    # stores nothing (as if its key were that link's), a cancel cancels nothing.
    answer_link: str | None
    remaining: int

    @classmethod
    def parse(cls, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError("a fault must be a JSON object")
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        fault = cls(
            status=_field(spec, "status", (int,)),
            body=_field(spec, "body", (dict, str), DEFAULT_FAULT_BODY),
            retry_after=_field(spec, "retry_after", (str,)),
            raw_body=_field(spec, "raw_body", (str,)),
            delay_seconds=float(_field(spec, "delay_seconds", (int, float), 0.0)),
            drop=_field(spec, "drop", (bool,), False),
            after_create=_field(spec, "after_create", (bool,), False),
            trickle_seconds=_field(spec, "trickle_seconds", (int, float)),
            link_overrides=_field(spec, "link_overrides", (dict,)),
            answer_link=_field(spec, "answer_link", (str,)),
            remaining=_field(spec, "count", (int,), 1),
        )
        fault._check(spec)
        return fault

    def _check(self, spec: Json) -> None:
        """Refuse specs that would be silently ignored, so a typo in a test fails loudly."""
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("fault 'status' must be between 100 and 599")
        if self.remaining < 1:
            raise ValueError("fault 'count' must be at least 1")
        if self.delay_seconds < 0:
            raise ValueError("fault 'delay_seconds' must not be negative")
        if self.trickle_seconds is not None and self.trickle_seconds <= 0:
            raise ValueError("fault 'trickle_seconds' must be greater than 0")
        if self.link_overrides is not None:
            self._check_link_overrides(self.link_overrides)
        if self.drop and self.status is not None:
            raise ValueError("a fault cannot both drop the connection and answer with a status")
        if self._changes_real_answer() and (self.drop or self.status is not None):
            raise ValueError(
                "fault 'trickle_seconds', 'link_overrides' and 'answer_link' act on the real answer: they exclude"
                " 'status' and 'drop'"
            )
        if self.answer_link is not None and not self.answer_link:
            raise ValueError("fault 'answer_link' must name a stored link")
        if self.status is None and any(key in spec for key in ("body", "raw_body", "retry_after")):
            raise ValueError("fault 'body', 'raw_body' and 'retry_after' need a 'status'")
        if "body" in spec and "raw_body" in spec:
            raise ValueError("a fault takes 'body' or 'raw_body', not both")
        if self.status is None and not self.drop and self.delay_seconds == 0 and not self._changes_real_answer():
            raise ValueError(
                "a fault needs 'status', 'drop', 'delay_seconds', 'trickle_seconds', 'link_overrides' or 'answer_link'"
            )

    @staticmethod
    def _check_link_overrides(overrides: Json) -> None:
        """Checked now, not when the answer is serialised mid-request, where a failure could only drop
        the connection."""
        if not overrides:
            raise ValueError("fault 'link_overrides' must replace at least one field")
        try:
            json.dumps(overrides)
        except (TypeError, ValueError):
            raise ValueError("fault 'link_overrides' must be JSON-serialisable") from None

    def _changes_real_answer(self) -> bool:
        """Trickle, link overrides and another link's answer act on the real answer, so a fault with only them still
        does something."""
        return self.trickle_seconds is not None or self.link_overrides is not None or self.answer_link is not None

    def reply(self) -> Reply:
        """The answer a fault with a `status` makes instead of the real one."""
        assert self.status is not None
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        if self.raw_body is not None:
            return Reply(self.status, self.raw_body.encode(), "text/plain; charset=utf-8", headers)
        return json_reply(self.status, self.body, headers)
