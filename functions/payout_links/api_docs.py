"""GET /openapi.json and GET /docs: the committed OpenAPI document and a page that renders it in the browser.

The document is `openapi.json` beside this module (written by `make openapi`), read on the first docs request
only, so that serving it costs the payout routes nothing. The page loads Swagger UI from a CDN in the browser;
the function ships no UI assets. The version is pinned and each file carries its Subresource Integrity hash, so a
changed file on the CDN is refused by the browser instead of run.

Where the CDN cannot be reached (no internet, a firewall, a content security policy, a changed file), the page
says so and links to the document itself: that message is the page's own content, and only a Swagger UI that
actually loaded replaces it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
SWAGGER_UI_CSS_SRI = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"
SWAGGER_UI_JS_SRI = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>payout-link-proxy API</title>
  <link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css" integrity="{SWAGGER_UI_CSS_SRI}" crossorigin="anonymous">
</head>
<body>
  <main id="fallback" style="font: 16px/1.5 system-ui, sans-serif; max-width: 40em; margin: 2em auto">
    <h1>payout-link-proxy API</h1>
    <p>The interactive reference could not load: it comes from cdn.jsdelivr.net, which this browser cannot reach
      (offline, a firewall or a content security policy).</p>
    <p>The API is described in full by its OpenAPI document: <a href="openapi.json">openapi.json</a>.</p>
  </main>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_UI}/swagger-ui-bundle.js" integrity="{SWAGGER_UI_JS_SRI}" crossorigin="anonymous"></script>
  <script>
    if (window.SwaggerUIBundle) {{
      document.getElementById("fallback").hidden = true;
      // Relative, so that the page works behind any stage, custom domain or local port.
      window.ui = SwaggerUIBundle({{ url: "openapi.json", dom_id: "#swagger-ui" }});
    }}
  </script>
</body>
</html>
"""


@cache
def openapi_document() -> str:
    return DOCUMENT_PATH.read_text(encoding="utf-8")
