"""What the browser tier's fixtures and tests share: screenshots kept as test artifacts, and a frontend's origin."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.support import ROOT

# Gitignored; emptied of the previous run's screenshots when the browser starts.
ARTIFACTS = ROOT / "test-artifacts" / "browser"
FRONTEND_PAGE = Path(__file__).with_name("frontend.html")

screenshots_taken: set[Path] = set()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """The page as test-artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^\w.-]+', '_', name).strip('_')}.png"
    page.screenshot(path=path, full_page=full_page)
    screenshots_taken.add(path)
    return path


class FrontendServer:
    """frontend.html at / on http://127.0.0.1:<free port>: a frontend on an origin of its own."""

    def __init__(self) -> None:
        body = FRONTEND_PAGE.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.split("?", 1)[0] == "/"
                self.send_response(200 if found else 404)
                self.send_header("content-type", "text/html; charset=utf-8" if found else "text/plain")
                self.send_header("content-length", str(len(body) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="frontend", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
