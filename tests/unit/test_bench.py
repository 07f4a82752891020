"""`make bench` fails when a figure misses its target: bench/perf.py's verdict, given figures it did not measure."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def perf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("perf", ROOT / "bench" / "perf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["perf"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def figures(perf: ModuleType, **overrides: Any) -> tuple[dict, list, dict]:
    """Cold samples, warm samples and sizes that meet every target, but for `overrides`."""
    cold_ms = {"handler": 330.0, "floor": 300.0, "venv handler": 860.0, "venv floor": 770.0, "naive": 1100.0}
    cold_ms.update(overrides.get("cold_ms", {}))
    cold = {label: [{"total_ms": ms, "import_ms": ms * 0.7}] * 3 for label, ms in cold_ms.items()}
    budgets = {
        name: dict(zip(("dynamodb", "secretsmanager", "upstream", "new_connections"), trips, strict=True))
        for name, _, trips in perf.LIFECYCLE_BUDGETS
    }
    trips = {
        "new_intent": {"dynamodb": 2, "secretsmanager": 0, "upstream": 1, "new_connections": 0},
        "replay": {"dynamodb": 0, "secretsmanager": 0, "upstream": 0, "new_connections": 0},
        **budgets,
    }
    for counts in trips.values():
        counts.update({"creates": 0, "reads": 0, "cancels": 0})
    trips.update(overrides.get("trips", {}))
    warm = {
        "new_ratio": 1.1,
        "replay_ratio": 0.3,
        "rss_after_10_mb": 120.0,
        "rss_after_1000_mb": 121.0,
        "handler_new_ms": 3.3,
        "floor_new_ms": 3.0,
        "handler_replay_ms": 0.3,
        "floor_replay_ms": 1.0,
        "round_trips": trips,
    }
    warm.update(overrides.get("warm", {}))
    sizes = {"function": (150_000, 140_000), "layer": (19_000_000, 6_900_000)}
    return cold, [warm] * 3, sizes


@pytest.mark.parametrize(
    "missed",
    [
        {"cold_ms": {"handler": 400.0}},  # cold/floor 1.33
        {"warm": {"new_ratio": 1.26}},
        {"warm": {"rss_after_1000_mb": 130.0}},
        {"trips": {"new_intent": {"dynamodb": 3, "secretsmanager": 0, "upstream": 1, "new_connections": 0}}},
    ],
    ids=["cold start", "warm CPU", "memory growth", "round trips"],
)
def test_a_missed_target_makes_the_benchmark_fail(perf: ModuleType, missed: dict, capsys) -> None:
    assert perf.report(*figures(perf, **missed), runs=3, write_docs=False) == 1
    assert "FAIL: missed" in capsys.readouterr().out


def test_every_target_met_is_a_pass(perf: ModuleType, capsys) -> None:
    assert perf.report(*figures(perf), runs=3, write_docs=False) == 0
    assert "FAIL" not in capsys.readouterr().out
