"""GET /openapi.json and GET /docs: off unless the deployment enables them, then the committed document and a
page that renders it."""

from __future__ import annotations

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_off_by_default_the_docs_routes_answer_like_no_route(function, path):
    # The template's default (EnableApiDocs=false) is what the fixture runs with.
    result = function.request("GET", path)

    assert result.status == 404 and result.is_problem()
    assert result.json()["type"].endswith(":not-found")


def test_enabled_the_function_serves_the_committed_document(function):
    function.set_env(API_DOCS_ENABLED="true")

    result = function.request("GET", "/openapi.json")

    assert result.status == 200 and result.headers["content-type"] == "application/json"
    assert result.body == (ROOT / "openapi.json").read_bytes()


def test_enabled_the_docs_page_renders_the_document_next_to_it(function):
    function.set_env(API_DOCS_ENABLED="true")

    result = function.request("GET", "/docs")

    assert result.status == 200 and result.headers["content-type"].startswith("text/html")
    page = result.body.decode()
    assert 'url: "openapi.json"' in page  # relative: works under any domain or stage
    assert page.count('integrity="sha384-') == 2  # the CDN's files are pinned by hash


def test_without_the_cdn_the_docs_page_says_so_and_links_the_document(function):
    """The fallback is the page's own content, shown unless Swagger UI really loaded: offline, behind a firewall or
    a CSP, the reader gets a sentence and a link instead of a blank page (rendered for real in tests/browser)."""
    function.set_env(API_DOCS_ENABLED="true")

    page = function.request("GET", "/docs").body.decode()

    fallback = page[page.index('<main id="fallback"') : page.index("</main>")]
    assert "could not load" in fallback
    assert '<a href="openapi.json">openapi.json</a>' in fallback
    assert "hidden" not in fallback  # visible by default
    script = page[page.rindex("<script>") :]
    assert script.index("if (window.SwaggerUIBundle)") < script.index('getElementById("fallback").hidden = true')
