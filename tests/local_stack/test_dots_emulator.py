"""The Dots emulator over real HTTP: the drifted link shape, idempotency, shapes, faults and the control API."""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AUTH = (DEMO_CLIENT_ID, DEMO_API_KEY)
PAYOUT_PATH = "/v2/payout-links"
# Only plain HTTP is used; sharing one context spares every client building its own.
_TLS_CONTEXT = ssl.create_default_context()


@pytest.fixture(scope="module")
def running_emulator() -> Iterator[DotsEmulator]:
    with DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY) as running:
        yield running


@pytest.fixture
def emulator(running_emulator: DotsEmulator) -> DotsEmulator:
    # One server for the module keeps the file fast; reset() gives every test a clean slate.
    running_emulator.reset()
    return running_emulator


def http_client(**options: Any) -> httpx.Client:
    """A client that talks straight to loopback: no proxy from the environment, no TLS set-up cost."""
    return httpx.Client(trust_env=False, verify=_TLS_CONTEXT, **{"timeout": 2.0, **options})


@pytest.fixture
def client(emulator: DotsEmulator) -> Iterator[httpx.Client]:
    with http_client(base_url=emulator.base_url, auth=AUTH) as http:
        yield http


def control(emulator: DotsEmulator, name: str, body: Any = None) -> httpx.Response:
    """Call the control API the way an out-of-process test would."""
    url = f"http://127.0.0.1:{emulator.port}/_emulator/{name}"
    with http_client() as http:
        return http.get(url) if body is None else http.post(url, json=body)


def payout(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 1000,
        "payee": {
            "country_code": "1",
            "phone_number": "5555550100",
            "first_name": "Ada",
            "email": "ada@example.com",
        },
        "delivery": {"method": "sms"},
        "metadata": {"order": "A-1"},
        "memo": "thanks",
        "idempotency_key": str(uuid.uuid4()),
    }
    body.update(overrides)
    return body


def test_create_answers_201_with_the_drifted_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    sent = payout(tax_exempt=True)

    response = client.post(PAYOUT_PATH, json=sent)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    link = response.json()
    uuid.UUID(link["id"])
    uuid.UUID(link["flow_id"])
    created = datetime.fromisoformat(link["created"])
    assert created.tzinfo is None and len(link["created"].rpartition(".")[2]) == 6
    assert link["link"].endswith(link["id"])
    assert isinstance(link["amount"], float) and link["amount"] == 1000.0
    assert link["metadata"] == json.dumps({"order": "A-1"})
    assert link["delivery"] == {
        "method": "sms",
        "email": "ada@example.com",
        "country_code": "1",
        "phone_number": "5555550100",
    }
    assert link["payee"] == sent["payee"]
    assert (link["status"], link["tax_exempt"], link["livemode"]) == ("created", True, False)
    assert (link["user_id"], link["claimed_user_id"], link["memo"]) == (None, None, "thanks")
    stats = emulator.stats()
    assert stats["links_created"] == 1
    assert stats["links"] == {sent["idempotency_key"]: link["id"]}
    assert stats["last_request"]["body"] == sent
    assert stats["last_request"]["headers"]["authorization"] == "<redacted>"


def test_user_id_only_payout_has_null_optional_fields(client: httpx.Client) -> None:
    response = client.post(PAYOUT_PATH, json={"amount": 5, "user_id": "user-1"})

    assert response.status_code == 201
    link = response.json()
    assert (link["user_id"], link["payee"], link["delivery"], link["metadata"]) == ("user-1", None, None, None)
    assert link["tax_exempt"] is False


@pytest.mark.parametrize("auth", [("demo-client-id", "wrong-key"), ("someone-else", DEMO_API_KEY), None])
def test_wrong_or_missing_credentials_are_401(emulator: DotsEmulator, auth: tuple[str, str] | None) -> None:
    with http_client(base_url=emulator.base_url, auth=auth) as http:
        response = http.post(PAYOUT_PATH, json=payout())

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert emulator.stats()["links_created"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON body"),
        (b"[1, 2]", "Invalid JSON body"),
        (json.dumps(payout(amount=0)).encode(), "amount must be a positive integer number of cents"),
        (json.dumps(payout(amount=True)).encode(), "amount must be a positive integer number of cents"),
        (json.dumps(payout(amount=10.5)).encode(), "amount must be a positive integer number of cents"),
        (json.dumps(payout(payee=None)).encode(), "user_id or payee is required"),
    ],
)
def test_invalid_bodies_are_400(emulator: DotsEmulator, client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post(PAYOUT_PATH, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert emulator.stats()["links_created"] == 0


def test_known_idempotency_key_returns_the_first_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    first = client.post(PAYOUT_PATH, json=payout(idempotency_key=key))
    # Dots ignores the new body and answers with the link it already has.
    second = client.post(PAYOUT_PATH, json=payout(idempotency_key=key, amount=9999))

    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["amount"] == 1000.0
    stats = emulator.stats()
    assert (stats["requests"], stats["links_created"]) == (2, 1)


def test_requests_without_a_key_each_create_a_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    ids = [client.post(PAYOUT_PATH, json=payout(idempotency_key=None)).json()["id"] for _ in range(2)]

    assert ids[0] != ids[1]
    assert emulator.stats()["links"] == {"<none>#1": ids[0], "<none>#2": ids[1]}


@pytest.mark.parametrize("shape", ["v2", "v2-200", "v1"])
def test_shapes_wrap_the_link(emulator: DotsEmulator, client: httpx.Client, shape: str) -> None:
    assert control(emulator, "shape", {"shape": shape}).status_code == 200

    response = client.post(PAYOUT_PATH, json=payout())

    link_id = emulator.stats()["links"].popitem()[1]
    body = response.json()
    if shape == "v1":
        assert response.status_code == 200
        assert body["success"] is True and body["payout_link"]["id"] == link_id
    else:
        assert response.status_code == (201 if shape == "v2" else 200)
        assert body["id"] == link_id


def test_unknown_shape_is_refused(emulator: DotsEmulator) -> None:
    assert control(emulator, "shape", {"shape": "v3"}).status_code == 400
    with pytest.raises(ValueError, match="unknown shape"):
        emulator.set_shape("v3")


def test_status_fault_answers_before_anything_is_created(emulator: DotsEmulator, client: httpx.Client) -> None:
    queued = control(emulator, "faults", {"status": 429, "retry_after": "2", "count": 2})
    assert queued.json() == {"queued": 1}

    throttled = [client.post(PAYOUT_PATH, json=payout()) for _ in range(2)]
    recovered = client.post(PAYOUT_PATH, json=payout())

    assert [r.status_code for r in throttled] == [429, 429]
    assert all(r.headers["retry-after"] == "2" for r in throttled)
    assert throttled[0].json() == {"message": "Injected failure"}
    assert recovered.status_code == 201
    assert emulator.stats()["links_created"] == 1


def test_status_fault_after_create_keeps_the_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    emulator.inject({"status": 502, "body": {"error": "bad gateway"}, "after_create": True})
    sent = payout()

    failed = client.post(PAYOUT_PATH, json=sent)
    retried = client.post(PAYOUT_PATH, json=sent)

    assert (failed.status_code, failed.json()) == (502, {"error": "bad gateway"})
    assert retried.status_code == 201
    assert emulator.stats()["links"] == {sent["idempotency_key"]: retried.json()["id"]}
    assert emulator.stats()["links_created"] == 1


def test_raw_body_fault_sends_unreadable_text(emulator: DotsEmulator, client: httpx.Client) -> None:
    emulator.inject({"status": 200, "raw_body": "<html>maintenance</html>"})

    response = client.post(PAYOUT_PATH, json=payout())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "<html>maintenance</html>"
    assert emulator.stats()["links_created"] == 0


def test_faults_are_served_in_order(emulator: DotsEmulator, client: httpx.Client) -> None:
    assert control(emulator, "faults", [{"status": 503}, {"status": 500}]).json() == {"queued": 2}

    statuses = [client.post(PAYOUT_PATH, json=payout()).status_code for _ in range(3)]

    assert statuses == [503, 500, 201]


@pytest.mark.parametrize(
    "spec",
    [
        {"stauts": 500},
        {"status": 500, "drop": True},
        {"body": "x"},
        {},
        {"status": True},
        {"count": 0, "drop": True},
        {"trickle_seconds": 0},
        {"trickle_seconds": -0.1},
        {"trickle_seconds": True},
        {"trickle_seconds": "0.1"},
        {"trickle_seconds": 0.1, "drop": True},
        {"trickle_seconds": 0.1, "status": 500},
        {"trickle_seconds": 0.1, "body": "x"},
        {"link_overrides": {}},
        {"link_overrides": ["amount", 1.0]},
        {"link_overrides": {"amount": 1.0}, "drop": True},
        {"link_overrides": {"amount": 1.0}, "status": 201},
        {"link_overrides": {"amount": 1.0}, "count": 0},
        {"answer_link": ""},
        {"answer_link": 7},
        {"answer_link": "some-link", "status": 201},
        {"answer_link": "some-link", "drop": True},
    ],
)
def test_malformed_faults_are_refused(emulator: DotsEmulator, spec: dict[str, Any]) -> None:
    assert control(emulator, "faults", spec).status_code == 400
    with pytest.raises(ValueError, match=r"\w"):  # refused with a message naming what is wrong
        emulator.inject(spec)


def test_delay_before_processing_slows_the_answer(emulator: DotsEmulator, client: httpx.Client) -> None:
    emulator.inject({"delay_seconds": 0.3})

    started = time.monotonic()
    response = client.post(PAYOUT_PATH, json=payout())

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 201


def test_delay_after_create_times_out_a_patient_enough_client(emulator: DotsEmulator, client: httpx.Client) -> None:
    emulator.inject({"delay_seconds": 0.3, "after_create": True})
    sent = payout()

    with pytest.raises(httpx.ReadTimeout):
        client.post(PAYOUT_PATH, json=sent, timeout=0.1)

    assert emulator.stats()["links_created"] == 1
    assert sent["idempotency_key"] in emulator.stats()["links"]


def test_drop_before_create_loses_the_request(emulator: DotsEmulator, client: httpx.Client) -> None:
    emulator.inject({"drop": True})

    with pytest.raises(httpx.TransportError):
        client.post(PAYOUT_PATH, json=payout())

    stats = emulator.stats()
    assert (stats["requests"], stats["links_created"]) == (1, 0)
    assert client.post(PAYOUT_PATH, json=payout()).status_code == 201


def test_drop_after_create_loses_only_the_response(emulator: DotsEmulator, client: httpx.Client) -> None:
    control(emulator, "faults", {"drop": True, "after_create": True})
    sent = payout()

    with pytest.raises(httpx.TransportError):
        client.post(PAYOUT_PATH, json=sent)
    created_id = emulator.stats()["links"][sent["idempotency_key"]]
    retried = client.post(PAYOUT_PATH, json=sent)

    assert retried.status_code == 201 and retried.json()["id"] == created_id
    assert emulator.stats()["links_created"] == 1


def test_trickle_keeps_every_read_quick_but_the_whole_answer_slow(emulator: DotsEmulator) -> None:
    seconds_per_byte = 0.004
    emulator.inject({"trickle_seconds": seconds_per_byte})
    # A per-read timeout far above the trickle interval, and far below the whole answer (about 1.6 s here).
    per_read_timeout = 0.25
    chunks: list[bytes] = []

    with http_client(base_url=emulator.base_url, auth=AUTH, timeout=per_read_timeout) as http:
        started = time.monotonic()
        with http.stream("POST", PAYOUT_PATH, json={"amount": 5, "user_id": "user-1"}) as response:
            head_after = time.monotonic() - started
            chunks.extend(response.iter_raw())
        total = time.monotonic() - started

    body = b"".join(chunks)
    assert response.status_code == 201
    assert response.headers["content-length"] == str(len(body))
    assert head_after < per_read_timeout  # the status line and headers are not held back
    assert len(chunks) > 1  # the body arrived in pieces
    assert total >= len(body) * seconds_per_byte > per_read_timeout
    link = json.loads(body)
    stats = emulator.stats()
    assert stats["links_created"] == 1 and stats["links"] == {"<none>#1": link["id"]}
    assert emulator.wait_idle(timeout=1)


def test_trickle_loses_a_client_with_a_deadline_and_then_stops(emulator: DotsEmulator) -> None:
    emulator.inject({"trickle_seconds": 0.05})  # about 30 s for the whole link
    sent = payout()
    received = 0

    with http_client(base_url=emulator.base_url, auth=AUTH) as http:
        deadline = time.monotonic() + 0.3
        with http.stream("POST", PAYOUT_PATH, json=sent) as response:
            for chunk in response.iter_raw():
                received += len(chunk)
                if time.monotonic() > deadline:
                    break  # the caller gives up on the whole answer and hangs up
        assert int(response.headers["content-length"]) > received

    # The link was created, and the trickle noticed the hang-up instead of writing on for 30 s.
    assert emulator.stats()["links"].keys() == {sent["idempotency_key"]}
    assert emulator.wait_idle(timeout=2)


def test_trickle_applies_to_the_next_count_requests(emulator: DotsEmulator, client: httpx.Client) -> None:
    seconds_per_byte = 0.001
    emulator.inject({"trickle_seconds": seconds_per_byte, "count": 2})

    timings: list[tuple[float, int]] = []
    for _ in range(3):
        started = time.monotonic()
        response = client.post(PAYOUT_PATH, json=payout())
        assert response.status_code == 201
        timings.append((time.monotonic() - started, len(response.content)))

    assert all(elapsed >= size * seconds_per_byte for elapsed, size in timings[:2])
    assert timings[2][0] < timings[2][1] * seconds_per_byte  # the third answer came in one piece
    assert emulator.stats()["links_created"] == 3


@pytest.mark.parametrize("shape", ["v2", "v2-200", "v1"])
def test_link_overrides_change_the_answer_but_not_the_stored_link(
    emulator: DotsEmulator, client: httpx.Client, shape: str
) -> None:
    emulator.set_shape(shape)
    other_payee = {"country_code": "1", "phone_number": "5550000000"}
    control(emulator, "faults", {"link_overrides": {"amount": 1.0, "payee": other_payee}, "count": 2})
    sent = payout()

    def link_of(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == (201 if shape == "v2" else 200)
        return response.json()["payout_link"] if shape == "v1" else response.json()

    altered = [link_of(client.post(PAYOUT_PATH, json=sent)) for _ in range(2)]
    replayed = link_of(client.post(PAYOUT_PATH, json=sent))  # same key, no fault left

    assert altered[0] == altered[1]
    assert (altered[0]["amount"], altered[0]["payee"]) == (1.0, other_payee)
    assert (replayed["amount"], replayed["payee"]) == (1000.0, sent["payee"])
    assert {**replayed, "amount": 1.0, "payee": other_payee} == altered[0]  # nothing else differs
    stats = emulator.stats()
    assert stats["links_created"] == 1 and stats["links"] == {sent["idempotency_key"]: replayed["id"]}


def test_link_overrides_leave_a_refusal_alone(emulator: DotsEmulator) -> None:
    emulator.inject({"link_overrides": {"amount": 1.0}})

    with http_client(base_url=emulator.base_url, auth=("demo-client-id", "wrong-key")) as http:
        response = http.post(PAYOUT_PATH, json=payout())

    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})


def test_link_overrides_must_be_json(emulator: DotsEmulator) -> None:
    with pytest.raises(ValueError, match="JSON"):
        emulator.inject({"link_overrides": {"created": object()}})


def test_answer_link_answers_a_create_with_another_stored_link_and_makes_nothing(
    emulator: DotsEmulator, client: httpx.Client
) -> None:
    first = client.post(PAYOUT_PATH, json=payout()).json()
    control(emulator, "faults", {"answer_link": first["id"]})
    sent = payout()  # another idempotency key

    answered = client.post(PAYOUT_PATH, json=sent)
    anew = client.post(PAYOUT_PATH, json=sent)  # no fault left: the key was never stored, so this creates

    assert answered.status_code == 201 and answered.json() == first
    assert anew.status_code == 201 and anew.json()["id"] != first["id"]
    stats = emulator.stats()
    assert stats["links_created"] == 2 and stats["creates"] == 3
    assert [link["id"] for link in emulator.links()] == [first["id"], anew.json()["id"]]


def test_answer_link_still_refuses_an_invalid_create_and_leaves_a_cancel_undone(
    emulator: DotsEmulator, client: httpx.Client
) -> None:
    first = client.post(PAYOUT_PATH, json=payout()).json()
    second = client.post(PAYOUT_PATH, json=payout()).json()
    emulator.inject({"answer_link": first["id"]}, {"answer_link": first["id"]})

    refused = client.post(PAYOUT_PATH, json=payout(amount=0))
    cancel = client.delete(f"{PAYOUT_PATH}/{second['id']}")

    assert refused.status_code == 400
    assert cancel.status_code == 200 and cancel.json()["id"] == first["id"]
    assert {link["status"] for link in emulator.links()} == {"created"}


def test_answer_link_must_name_a_stored_link(emulator: DotsEmulator) -> None:
    with pytest.raises(ValueError, match="no stored link"):
        emulator.inject({"answer_link": str(uuid.uuid4())})
    assert control(emulator, "faults", {"answer_link": str(uuid.uuid4())}).status_code == 400
    assert emulator.inject() == 0


def test_rotated_credentials_replace_the_old_ones(emulator: DotsEmulator, client: httpx.Client) -> None:
    assert control(emulator, "credentials", {"client_id": "new-id", "api_key": "new-key"}).status_code == 200

    old = client.post(PAYOUT_PATH, json=payout())
    new = client.post(PAYOUT_PATH, json=payout(), auth=("new-id", "new-key"))

    assert (old.status_code, new.status_code) == (401, 201)


def test_reset_restores_the_initial_state(emulator: DotsEmulator, client: httpx.Client) -> None:
    client.post(PAYOUT_PATH, json=payout())
    emulator.inject({"status": 500})
    emulator.set_shape("v1")
    emulator.set_credentials("other-id", "other-key")

    assert control(emulator, "reset", {}).json() == {}
    after_reset = emulator.stats()
    response = client.post(PAYOUT_PATH, json=payout())

    assert after_reset["requests"] == after_reset["links_created"] == after_reset["connections"] == 0
    assert (after_reset["links"], after_reset["last_request"]) == ({}, None)
    assert response.status_code == 201 and "id" in response.json()


def test_stats_over_http_match_the_python_view(emulator: DotsEmulator, client: httpx.Client) -> None:
    sent = payout()
    client.post(PAYOUT_PATH, json=sent)

    stats = control(emulator, "stats").json()

    assert stats["links"] == emulator.stats()["links"]
    assert stats["last_request"]["body"] == sent
    assert stats["last_request"]["headers"]["content-type"] == "application/json"


def test_keep_alive_client_reuses_one_connection(emulator: DotsEmulator) -> None:
    for expected_connections in (1, 2):
        with http_client(base_url=emulator.base_url, auth=AUTH) as http:
            responses = [http.post(PAYOUT_PATH, json=payout()) for _ in range(2)]
        assert [r.status_code for r in responses] == [201, 201]
        assert emulator.stats()["connections"] == expected_connections


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v2/payout-links"), ("POST", "/api/v1/other")])
def test_unknown_routes_are_404(client: httpx.Client, emulator: DotsEmulator, method: str, path: str) -> None:
    response = client.request(method, f"http://127.0.0.1:{emulator.port}{path}")

    assert response.status_code == 404
    assert response.json() == {"message": "Not found"}
    assert response.headers["content-length"] == str(len(response.content))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com", "::"])  # noqa: S104 - refused hosts
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY, host=host)


def test_localhost_binds_ipv4_loopback() -> None:
    with DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY, host="localhost") as running:
        assert running.base_url == f"http://127.0.0.1:{running.port}/api"


def test_stop_closes_the_listening_socket_and_idle_connections() -> None:
    running = DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY).start()
    with http_client(base_url=running.base_url, auth=AUTH) as http:
        assert http.post(PAYOUT_PATH, json=payout()).status_code == 201
        running.stop()  # while the client still holds a keep-alive connection

        with pytest.raises(httpx.ConnectError):
            http.post(PAYOUT_PATH, json=payout())


# ---------------------------------------------------------------------------------------------
# The payout-link lifecycle: retrieve, cancel, statuses, seeded links
# ---------------------------------------------------------------------------------------------

CANCELABLE = ["created", "delivery_pending", "delivery_failed", "sent", "delivered"]


def link_path(link_id: str) -> str:
    return f"{PAYOUT_PATH}/{link_id}"


def unwrap(response: httpx.Response, shape: str = "v2") -> dict[str, Any]:
    """The link in a 200 answer to a read or a cancel, checking the shape's wrapping."""
    assert response.status_code == 200, response.text
    body = response.json()
    if shape == "v1":
        assert body.keys() == {"success", "payout_link"} and body["success"] is True
        return body["payout_link"]
    return body


def create(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    """A link created through the API (in the default v2 shape)."""
    response = client.post(PAYOUT_PATH, json=payout(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("shape", ["v2", "v2-200", "v1"])
def test_retrieve_answers_the_stored_link_in_each_shape(
    emulator: DotsEmulator, client: httpx.Client, shape: str
) -> None:
    created = create(client)
    emulator.set_shape(shape)

    response = client.get(link_path(created["id"]))

    assert unwrap(response, shape) == created == emulator.link(created["id"])


@pytest.mark.parametrize("origin", ["keyed", "keyless", "seeded"])
def test_retrieve_finds_a_link_however_it_was_made(emulator: DotsEmulator, client: httpx.Client, origin: str) -> None:
    if origin == "seeded":
        made = emulator.seed_link()
    else:
        made = create(client, idempotency_key=None if origin == "keyless" else str(uuid.uuid4()))

    assert unwrap(client.get(link_path(made["id"]))) == made


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_link_is_404(emulator: DotsEmulator, client: httpx.Client, method: str) -> None:
    create(client)

    response = client.request(method, link_path(str(uuid.uuid4())))

    assert (response.status_code, response.json()) == (404, {"message": "Payout link not found"})


@pytest.mark.parametrize("auth", [("demo-client-id", "wrong-key"), None])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_retrieve_and_cancel_need_credentials(
    emulator: DotsEmulator, auth: tuple[str, str] | None, method: str
) -> None:
    link_id = emulator.seed_link()["id"]

    with http_client(base_url=emulator.base_url, auth=auth) as http:
        response = http.request(method, link_path(link_id))
        unknown = http.request(method, link_path(str(uuid.uuid4())))  # no hint of which links exist

    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
    assert (unknown.status_code, unknown.json()) == (401, {"message": "Unauthorized"})
    assert emulator.link(link_id)["status"] == "created"


def test_cancel_shows_in_every_later_answer(emulator: DotsEmulator, client: httpx.Client) -> None:
    sent = payout()
    created = client.post(PAYOUT_PATH, json=sent).json()

    canceled = unwrap(client.delete(link_path(created["id"])))
    retrieved = unwrap(client.get(link_path(created["id"])))
    replayed = client.post(PAYOUT_PATH, json=sent)

    assert canceled == {**created, "status": "canceled"}
    assert retrieved == canceled
    assert replayed.status_code == 201 and replayed.json() == canceled
    assert emulator.link(created["id"]) == canceled
    assert emulator.stats()["links_created"] == 1


@pytest.mark.parametrize("shape", ["v2", "v2-200", "v1"])
def test_cancel_answers_200_in_each_shape(emulator: DotsEmulator, client: httpx.Client, shape: str) -> None:
    link_id = create(client)["id"]
    emulator.set_shape(shape)

    link = unwrap(client.delete(link_path(link_id)), shape)

    assert (link["id"], link["status"]) == (link_id, "canceled")


@pytest.mark.parametrize("status", CANCELABLE)
def test_every_cancelable_status_can_be_canceled(emulator: DotsEmulator, client: httpx.Client, status: str) -> None:
    link_id = emulator.seed_link()["id"]
    emulator.set_status(link_id, status)

    assert unwrap(client.delete(link_path(link_id)))["status"] == "canceled"


def test_second_cancel_is_refused(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = create(client)["id"]
    assert client.delete(link_path(link_id)).status_code == 200

    again = client.delete(link_path(link_id))

    # The status and text are the emulator's choice (Dots does not document them); only a 4xx is promised.
    assert (again.status_code, again.json()) == (409, {"message": "Payout link already canceled"})
    assert emulator.link(link_id)["status"] == "canceled"


@pytest.mark.parametrize("status", ["claimed", "reversed", "expired"])
def test_settled_links_cannot_be_canceled(emulator: DotsEmulator, client: httpx.Client, status: str) -> None:
    link_id = create(client)["id"]
    emulator.set_status(link_id, status)

    refused = client.delete(link_path(link_id))

    assert refused.status_code == 400
    assert refused.json() == {"message": f"Payout link cannot be canceled in status {status}"}
    assert unwrap(client.get(link_path(link_id)))["status"] == status


def test_status_control_moves_a_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    created = create(client)

    moved = control(emulator, f"links/{created['id']}/status", {"status": "delivered"})

    assert moved.status_code == 200 and moved.json() == {**created, "status": "delivered"}
    assert unwrap(client.get(link_path(created["id"])))["status"] == "delivered"
    assert emulator.set_status(created["id"], "expired")["status"] == "expired"
    assert emulator.link(created["id"])["status"] == "expired"


def test_claimed_gets_a_fresh_claimed_user_id_once(emulator: DotsEmulator) -> None:
    first, second = emulator.seed_link()["id"], emulator.seed_link()["id"]

    claimed = control(emulator, f"links/{first}/status", {"status": "claimed"}).json()
    other = emulator.set_status(second, "claimed")
    reclaimed = emulator.set_status(emulator.set_status(first, "sent")["id"], "claimed")

    uuid.UUID(claimed["claimed_user_id"])
    assert claimed["status"] == "claimed"
    assert other["claimed_user_id"] not in (None, claimed["claimed_user_id"])
    assert reclaimed["claimed_user_id"] == claimed["claimed_user_id"]  # it had one already


@pytest.mark.parametrize(
    "body", [{"status": "paid"}, {"status": "CANCELED"}, {"status": None}, {}, {"status": "sent", "by": "me"}, ["sent"]]
)
def test_status_control_refuses_bad_input(emulator: DotsEmulator, body: Any) -> None:
    link_id = emulator.seed_link()["id"]

    response = control(emulator, f"links/{link_id}/status", body)

    assert response.status_code == 400 and response.json()["message"]
    assert emulator.link(link_id)["status"] == "created"


def test_set_status_refuses_an_unknown_status_or_link(emulator: DotsEmulator) -> None:
    link_id = emulator.seed_link()["id"]
    unknown_id = str(uuid.uuid4())

    with pytest.raises(ValueError, match="unknown status 'paid'"):
        emulator.set_status(link_id, "paid")
    with pytest.raises(KeyError):
        emulator.set_status(unknown_id, "sent")
    response = control(emulator, f"links/{unknown_id}/status", {"status": "sent"})

    assert (response.status_code, response.json()) == (404, {"message": "Payout link not found"})


def test_seed_without_a_payload_makes_the_default_link(emulator: DotsEmulator) -> None:
    with http_client() as http:
        empty = http.post(f"http://127.0.0.1:{emulator.port}/_emulator/links")
    braces = control(emulator, "links", {})

    assert empty.status_code == braces.status_code == 201
    for link in (empty.json(), braces.json()):
        assert (link["amount"], link["status"], link["claimed_user_id"]) == (1234.0, "created", None)
        assert link["payee"]["phone_number"] and link["user_id"] is None
    stats = emulator.stats()
    assert stats["links"] == {"<seeded>#1": empty.json()["id"], "<seeded>#2": braces.json()["id"]}
    assert (stats["requests"], stats["links_created"], stats["last_request"]) == (0, 0, None)


def test_seeded_link_is_retrievable_with_credentials_only(emulator: DotsEmulator, client: httpx.Client) -> None:
    sent = payout(amount=777, idempotency_key=None, delivery={"method": "email"})
    seeded = control(emulator, "links", sent).json()

    retrieved = unwrap(client.get(link_path(seeded["id"])))
    with http_client(base_url=emulator.base_url) as anonymous:
        refused = anonymous.get(link_path(seeded["id"]))

    assert retrieved == seeded
    assert (seeded["amount"], seeded["payee"], seeded["memo"]) == (777.0, sent["payee"], "thanks")
    assert seeded["delivery"]["method"] == "email" and seeded["metadata"] == json.dumps(sent["metadata"])
    assert refused.status_code == 401
    assert emulator.stats()["creates"] == 0


def test_links_lists_every_stored_link_with_its_status_and_key(emulator: DotsEmulator, client: httpx.Client) -> None:
    first, second = payout(), payout(amount=2000)
    canceled = client.post(PAYOUT_PATH, json=first).json()
    created = client.post(PAYOUT_PATH, json=second).json()
    replay = client.post(PAYOUT_PATH, json=second).json()  # the same key: no other link
    keyless = create(client, idempotency_key=None)
    seeded = emulator.seed_link()
    assert client.delete(link_path(canceled["id"])).status_code == 200
    emulator.set_status(seeded["id"], "claimed")

    listed = emulator.links()

    assert replay["id"] == created["id"]
    assert listed == [
        {"id": canceled["id"], "status": "canceled", "idempotency_key": first["idempotency_key"], "seeded": False},
        {"id": created["id"], "status": "created", "idempotency_key": second["idempotency_key"], "seeded": False},
        {"id": keyless["id"], "status": "created", "idempotency_key": None, "seeded": False},
        {"id": seeded["id"], "status": "claimed", "idempotency_key": None, "seeded": True},
    ]
    assert control(emulator, "links").json() == listed  # GET /_emulator/links: the same, over HTTP
    emulator.reset()
    assert emulator.links() == [] and control(emulator, "links").json() == []


def test_seed_copies_its_payload(emulator: DotsEmulator) -> None:
    sent = payout(idempotency_key=None)
    link_id = emulator.seed_link(sent)["id"]
    sent["payee"]["phone_number"] = "5550000000"

    assert emulator.link(link_id)["payee"]["phone_number"] == "5555550100"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1]",
        json.dumps(payout(amount=0, idempotency_key=None)).encode(),
        json.dumps({"amount": 5}).encode(),
        json.dumps(payout(delivery={"method": "pigeon"}, idempotency_key=None)).encode(),
        json.dumps(payout()).encode(),  # an idempotency key: a seeded link could never be replayed
    ],
)
def test_seed_refuses_invalid_payloads(emulator: DotsEmulator, body: bytes) -> None:
    with http_client() as http:
        response = http.post(f"http://127.0.0.1:{emulator.port}/_emulator/links", content=body)

    assert response.status_code == 400 and response.json()["message"]
    assert emulator.stats()["links"] == {}
    if body.startswith(b'{"'):
        with pytest.raises(ValueError, match=r"\w"):
            emulator.seed_link(json.loads(body))


def test_control_shows_a_stored_link_whatever_the_shape(emulator: DotsEmulator) -> None:
    emulator.set_shape("v1")
    seeded = emulator.seed_link()

    shown = control(emulator, f"links/{seeded['id']}")
    unknown = control(emulator, f"links/{uuid.uuid4()}")
    copied = emulator.link(seeded["id"])
    copied["status"] = "claimed"

    assert (shown.status_code, shown.json()) == (200, seeded)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Payout link not found"})
    assert emulator.link(seeded["id"])["status"] == "created"  # link() hands out a copy
    with pytest.raises(KeyError):
        emulator.link(str(uuid.uuid4()))


def test_faults_are_taken_in_arrival_order_by_every_method(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = create(client)["id"]
    assert control(emulator, "faults", [{"status": 503}, {"status": 500}, {"status": 429}]).json() == {"queued": 3}
    emulator.seed_link()  # the control API takes no fault

    faulted = [
        client.get(link_path(link_id)).status_code,
        client.delete(link_path(link_id)).status_code,
        client.post(PAYOUT_PATH, json=payout()).status_code,
    ]
    assert emulator.link(link_id)["status"] == "created"  # the faulted cancel never happened
    real = [
        client.get(link_path(link_id)).status_code,
        client.delete(link_path(link_id)).status_code,
        client.post(PAYOUT_PATH, json=payout()).status_code,
    ]

    assert faulted == [503, 500, 429]
    assert real == [200, 200, 201]
    assert emulator.stats()["links_created"] == 2


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_drop_before_the_action_loses_a_read_or_a_cancel(
    emulator: DotsEmulator, client: httpx.Client, method: str
) -> None:
    link_id = create(client)["id"]
    emulator.inject({"drop": True})

    with pytest.raises(httpx.TransportError):
        client.request(method, link_path(link_id))

    assert emulator.link(link_id)["status"] == "created"
    assert client.request(method, link_path(link_id)).status_code == 200


@pytest.mark.parametrize("fault", [{"status": 502, "after_create": True}, {"drop": True, "after_create": True}])
def test_fault_after_the_cancel_keeps_the_cancel(
    emulator: DotsEmulator, client: httpx.Client, fault: dict[str, Any]
) -> None:
    link_id = create(client)["id"]
    emulator.inject(fault)

    if fault.get("drop"):
        with pytest.raises(httpx.TransportError):
            client.delete(link_path(link_id))
    else:
        assert client.delete(link_path(link_id)).status_code == 502

    assert emulator.link(link_id)["status"] == "canceled"
    assert client.delete(link_path(link_id)).status_code == 409  # a retried cancel finds it done


def test_link_overrides_change_a_read_but_not_the_stored_link(emulator: DotsEmulator, client: httpx.Client) -> None:
    created = create(client)
    emulator.inject({"link_overrides": {"status": "claimed", "amount": 1.0}})

    altered = unwrap(client.get(link_path(created["id"])))
    plain = unwrap(client.get(link_path(created["id"])))

    assert altered == {**created, "status": "claimed", "amount": 1.0}
    assert plain == created == emulator.link(created["id"])


def test_link_overrides_change_a_cancel_answer_only(emulator: DotsEmulator, client: httpx.Client) -> None:
    created = create(client)
    emulator.inject({"link_overrides": {"status": "sent"}})

    answered = unwrap(client.delete(link_path(created["id"])))

    assert answered == {**created, "status": "sent"}
    assert emulator.link(created["id"])["status"] == "canceled"


def test_trickle_slows_a_read(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = create(client)["id"]
    seconds_per_byte = 0.002
    emulator.inject({"trickle_seconds": seconds_per_byte})

    started = time.monotonic()
    response = client.get(link_path(link_id))
    elapsed = time.monotonic() - started

    assert unwrap(response)["id"] == link_id
    assert elapsed >= len(response.content) * seconds_per_byte


def test_a_delayed_read_keeps_the_emulator_busy(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = emulator.seed_link()["id"]
    emulator.inject({"delay_seconds": 0.6})

    with pytest.raises(httpx.ReadTimeout):
        client.get(link_path(link_id), timeout=0.1)

    assert not emulator.wait_idle(timeout=0.05)  # the read is still being handled
    assert emulator.wait_idle(timeout=2)


def test_stats_count_every_kind_of_request(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = create(client)["id"]
    emulator.inject({"status": 500})
    client.post(PAYOUT_PATH, json=payout())  # faulted: still a create
    client.get(link_path(link_id))
    client.get(link_path(str(uuid.uuid4())))  # unknown: still a read
    client.get(link_path(link_id), auth=("demo-client-id", "wrong-key"))  # refused: still a read
    emulator.seed_link()  # not a payout-link API request
    client.delete(link_path(link_id))

    stats = control(emulator, "stats").json()

    assert (stats["requests"], stats["creates"], stats["reads"], stats["cancels"]) == (6, 2, 3, 1)
    assert stats["links_created"] == 1 and len(stats["links"]) == 2
    last = stats["last_request"]
    assert (last["method"], last["path"], last["body"]) == ("DELETE", f"/api{link_path(link_id)}", None)
    assert last["headers"]["authorization"] == "<redacted>"


def test_create_is_recorded_with_its_method_and_path(emulator: DotsEmulator, client: httpx.Client) -> None:
    sent = payout()
    client.post(PAYOUT_PATH, json=sent)

    last = emulator.stats()["last_request"]

    assert (last["method"], last["path"], last["body"]) == ("POST", "/api/v2/payout-links", sent)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "/{id}/extra"),
        ("DELETE", "/{id}/extra"),
        ("GET", "/"),
        ("GET", "/{id}/"),
        ("POST", "/{id}"),
        ("PUT", "/{id}"),
    ],
)
def test_other_payout_link_paths_are_404_and_not_counted(
    emulator: DotsEmulator, client: httpx.Client, method: str, suffix: str
) -> None:
    link_id = create(client)["id"]
    emulator.inject({"status": 500})

    response = client.request(method, PAYOUT_PATH + suffix.format(id=link_id))

    assert (response.status_code, response.json()) == (404, {"message": "Not found"})
    stats = emulator.stats()
    assert stats["requests"] == 1 and emulator.link(link_id)["status"] == "created"
    assert client.get(link_path(link_id)).status_code == 500  # the fault is still queued for the next real request


def test_reset_forgets_every_link_and_count(emulator: DotsEmulator, client: httpx.Client) -> None:
    link_id = create(client)["id"]
    seeded_id = emulator.seed_link()["id"]
    client.get(link_path(link_id))
    client.delete(link_path(seeded_id))

    emulator.reset()
    stats = emulator.stats()

    assert (stats["requests"], stats["creates"], stats["reads"], stats["cancels"], stats["links"]) == (0, 0, 0, 0, {})
    assert client.get(link_path(link_id)).status_code == 404
    with pytest.raises(KeyError):
        emulator.link(seeded_id)
