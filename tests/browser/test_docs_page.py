"""GET /docs in real Chromium when the CDN that serves Swagger UI cannot be reached: what an offline reader sees.

The CDN's host is blocked by the page's routing, so the test holds on a machine with internet too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import screenshot
from tests.support import ROOT

pytestmark = pytest.mark.browser

CDN = "https://cdn.jsdelivr.net/"


def test_offline_the_docs_page_shows_its_fallback_with_a_working_link(page, stack):
    refused: list[str] = []

    def offline(route: Any) -> None:
        refused.append(route.request.url)
        route.abort("internetdisconnected")

    page.route(f"{CDN}**", offline)
    page.goto(f"{stack.url}/docs")

    fallback = page.locator("#fallback")
    expect(fallback).to_be_visible()
    expect(fallback).to_contain_text("could not load")
    # Swagger UI's stylesheet and script were asked for and refused: the fallback stands because the CDN is gone.
    assert sorted(url.rsplit("/", 1)[1] for url in refused) == ["swagger-ui-bundle.js", "swagger-ui.css"], refused
    screenshot(page, "docs-fallback")

    link = fallback.get_by_role("link", name="openapi.json")
    expect(link).to_be_visible()
    with page.expect_response(f"{stack.url}/openapi.json") as answer:
        link.click()

    assert page.url == f"{stack.url}/openapi.json"
    assert answer.value.status == 200
    document = answer.value.json()
    assert document["openapi"].startswith("3.1") and document == json.loads((ROOT / "openapi.json").read_text())
