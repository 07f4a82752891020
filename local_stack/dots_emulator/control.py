"""The control API: each `/_emulator/...` request answered through one public method of the emulator.

A control request needs no credentials, and is neither counted as an API request nor given a fault. What the
control API may call is `Controlled`, nothing more: over HTTP, a control does what a test in the same process does
with the method of the same name.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import unquote

from local_stack.dots_emulator.api import SHAPES, UNREADABLE, Json, Reply, error_reply, json_reply, link_not_found

CONTROL_PREFIX = "/_emulator/"


class Controlled(Protocol):
    """The emulator as the control API sees it: one method per control."""

    def stats(self) -> Json: ...

    def reset(self) -> None: ...

    def inject(self, *faults: Json) -> int: ...

    def clear_faults(self) -> int: ...

    def set_shape(self, shape: str) -> None: ...

    def set_credentials(self, client_id: str, api_key: str) -> None: ...

    def seed_link(self, payload: Json | None = None) -> Json: ...

    def links(self) -> list[Json]: ...

    def link(self, link_id: str) -> Json: ...

    def set_status(self, link_id: str, status: object) -> Json: ...


def answer(emulator: Controlled, method: str, name: str, body: Any) -> Reply:
    """The answer to `method CONTROL_PREFIX + name`; `body` is None for an empty request body, `UNREADABLE` for
    one that is not JSON."""
    match (method, name.split("/")):
        case ("GET", ["stats"]):
            return json_reply(200, emulator.stats())
        case ("POST", ["reset"]):
            emulator.reset()
            return json_reply(200, {})
        case ("POST", ["faults"]):
            return _faults(emulator, body)
        case ("DELETE", ["faults"]):
            return json_reply(200, {"dropped": emulator.clear_faults()})
        case ("POST", ["shape"]):
            return _shape(emulator, body)
        case ("POST", ["credentials"]):
            return _credentials(emulator, body)
        case ("POST", ["links"]):
            return _seed(emulator, body)
        case ("GET", ["links"]):
            return json_reply(200, emulator.links())
        case ("GET", ["links", link_id]) if link_id:
            return _link(emulator, unquote(link_id))
        case ("POST", ["links", link_id, "status"]) if link_id:
            return _status(emulator, unquote(link_id), body)
        case _:
            return error_reply(404, "Not found")


def _faults(emulator: Controlled, body: Any) -> Reply:
    if body is UNREADABLE:
        return error_reply(400, "Invalid JSON body")
    specs = body if isinstance(body, list) else [body]
    try:
        queued = emulator.inject(*specs)
    except ValueError as error:
        return error_reply(400, str(error))
    return json_reply(200, {"queued": queued})


def _shape(emulator: Controlled, body: Any) -> Reply:
    shape = body.get("shape") if isinstance(body, dict) else None
    if not isinstance(shape, str):
        return error_reply(400, "shape must be one of " + ", ".join(SHAPES))
    try:
        emulator.set_shape(shape)
    except ValueError as error:
        return error_reply(400, str(error))
    return json_reply(200, {"shape": shape})


def _credentials(emulator: Controlled, body: Any) -> Reply:
    if not isinstance(body, dict):
        return error_reply(400, "Invalid JSON body")
    client_id, api_key = body.get("client_id"), body.get("api_key")
    if not isinstance(client_id, str) or not isinstance(api_key, str):
        return error_reply(400, "client_id and api_key must be strings")
    emulator.set_credentials(client_id, api_key)
    return json_reply(200, {})


def _seed(emulator: Controlled, body: Any) -> Reply:
    try:
        return json_reply(201, emulator.seed_link(body))
    except ValueError as error:
        return error_reply(400, str(error))


def _link(emulator: Controlled, link_id: str) -> Reply:
    try:
        return json_reply(200, emulator.link(link_id))
    except KeyError:
        return link_not_found().reply()


def _status(emulator: Controlled, link_id: str, body: Any) -> Reply:
    if not isinstance(body, dict):
        return error_reply(400, "Invalid JSON body")
    unknown = set(body) - {"status"}
    if unknown:
        return error_reply(400, f"unknown keys: {', '.join(sorted(unknown))}")
    try:
        return json_reply(200, emulator.set_status(link_id, body.get("status")))
    except ValueError as error:
        return error_reply(400, str(error))
    except KeyError:
        return link_not_found().reply()
