"""Placeholder: per-caller limits (reservations) are off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payout_links.problems import Problem


@dataclass(frozen=True)
class Reservation:
    amount: int
    day_counter: str | None = None
    hour_counter: str | None = None

    def attributes(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_attributes(cls, item: dict[str, Any]) -> Reservation | None:
        return None


class CallerLimits:
    def __init__(self, **_: Any) -> None:
        pass

    def reserve(self, caller: str, amount: int) -> tuple[Reservation, list[dict[str, Any]]]:
        return Reservation(amount), []

    def refusal(self, reservation: Reservation, failed: Any) -> Problem:
        return Problem("limit")

    def give_back(self, reservation: Reservation) -> list[dict[str, Any]]:
        return []
