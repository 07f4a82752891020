"""The local stack's control API, on a loopback port of its own: never on the API's port, where it would be a route
that API Gateway does not have. It answers JSON, with no authentication (like everything the local stack binds, it
listens on 127.0.0.1 only):

- `GET /schedules`: each scheduled function with its local name, its events (expression, and period in seconds,
  null for no timer), whether a run is under way and its execution environment's process id;
- `POST /schedules/{function}/run`: run the function now, as its first schedule event would (`?event=NAME` for
  another), after any run under way, and answer once the run is over: 200 with the run (`outcome` "succeeded",
  `result`: what the handler returned), 502 with the run when it failed (`outcome` "failed" or "stopped",
  `error`), 404 for a function without schedule events.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from local_stack.core.schedules import LocalSchedules

# serve_forever() notices shutdown() between polls: a short poll keeps stop() quick.
_POLL_INTERVAL_SECONDS = 0.05


class LocalControl(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, schedules: LocalSchedules, port: int = 0) -> None:
        """The control API of `schedules` on 127.0.0.1:`port` (0: any free port); `start()` serves it."""
        self.schedules = schedules
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name="local-control",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: LocalControl
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/schedules":
            self._answer(200, self.server.schedules.describe())
        else:
            self._answer(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        self._discard_body()
        if len(parts) != 3 or parts[0] != "schedules" or parts[2] != "run":
            self._answer(404, {"message": "Not Found"})
            return
        event = parse_qs(url.query).get("event", [None])[0]
        try:
            run = self.server.schedules.run_now(unquote(parts[1]), event=event)
        except KeyError as exc:
            self._answer(404, {"message": exc.args[0]})
            return
        except RuntimeError as exc:
            self._answer(503, {"message": str(exc)})
            return
        self._answer(200 if run.outcome == "succeeded" else 502, run.as_json())

    def _discard_body(self) -> None:
        length = self.headers.get("content-length")
        if length and length.isdigit():
            self.rfile.read(int(length))

    def _answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
