"""What one execution environment keeps between invocations, and `service.reset()`, which forgets all of it: the
tests' way to start a cold container."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def function_caches() -> dict[str, Any]:
    """Every `functools.cache` in the function's modules, found by looking, so that a cache added later is covered
    without anyone remembering to list it."""
    import payout_links

    found = {}
    for module_info in pkgutil.iter_modules(payout_links.__path__):
        module = importlib.import_module(f"payout_links.{module_info.name}")
        for name, value in vars(module).items():
            if callable(getattr(value, "cache_info", None)) and getattr(value, "__module__", None) == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_reset_forgets_everything_a_container_keeps(function, upstream):
    from aws_lambda_powertools.logging import logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start

    from payout_links import api_docs, service

    # A container that has served a frontend's create, a partner's, and the API document.
    assert function.create().status == 201
    assert function.webhook().status == 201
    api_docs.openapi_document()
    caches = function_caches()
    assert {name for name, cached in caches.items() if cached.cache_info().currsize == 0} == set()
    assert not powertools_logger.is_cold_start and not cold_start.is_cold_start

    service.reset()

    assert {name for name, cached in caches.items() if cached.cache_info().currsize} == set()
    assert powertools_logger.is_cold_start and cold_start.is_cold_start
    assert len(caches) >= 6  # settings, service, partner secrets, session, clients, API document
