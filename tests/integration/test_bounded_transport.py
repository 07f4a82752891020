"""The upstream client's wall-clock bound, against a real HTTP server that dribbles its answer (the emulator)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from payout_links import bounded_transport
from payout_links.bounded_transport import BoundedBackend, deadline_client

pytestmark = pytest.mark.integration

LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=1)
BODY = {"amount": 2500, "user_id": "u-1", "idempotency_key": "f47ac10b-58cc-4372-a567-0e02b2c3d479"}


@pytest.fixture
def client():
    with deadline_client(limits=LIMITS) as http:
        yield http


def test_a_dribbled_answer_is_cut_at_the_deadline_though_no_single_read_times_out(upstream, client):
    # One byte every 0.1 s: a 1-second read timeout never fires, and the whole body would take about a minute.
    upstream.inject({"trickle_seconds": 0.1})
    url = f"{upstream.base_url}/v2/payout-links"

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), bounded_transport.within(0.8):
        client.post(url, json=BODY, auth=("demo-client-id", "demo-api-key-not-a-secret"), timeout=1.0)
    elapsed = time.monotonic() - started

    assert 0.7 <= elapsed < 1.0
    assert upstream.stats()["links_created"] == 1  # the upstream made the link: the caller's outcome is unknown


def test_without_a_deadline_the_same_client_reads_a_slow_answer_whole(upstream, client):
    upstream.inject({"trickle_seconds": 0.002})
    url = f"{upstream.base_url}/v2/payout-links"

    response = client.post(url, json=BODY, auth=("demo-client-id", "demo-api-key-not-a-secret"), timeout=1.0)

    assert response.status_code == 201 and response.json()["amount"] == 2500.0


def test_no_connection_is_opened_once_the_deadline_has_passed(upstream, client):
    with pytest.raises(httpx.ConnectTimeout), bounded_transport.within(0.0):
        client.post(f"{upstream.base_url}/v2/payout-links", json=BODY, timeout=1.0)

    assert upstream.stats()["requests"] == 0


def test_the_client_opens_its_connections_through_the_bounded_backend(client):
    # The backend is chosen through the transport's pool, the one place httpx lets it be set: an httpx upgrade that
    # moved it would make the bound silently disappear, so it is checked here.
    assert isinstance(client._transport._pool._network_backend, BoundedBackend)


def test_a_name_that_takes_long_to_resolve_is_a_connect_timeout_at_the_deadline(monkeypatch, client):
    def slow_lookup(*args, **kwargs):
        time.sleep(2.0)
        return socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)

    started = time.monotonic()
    with pytest.raises(httpx.ConnectTimeout), bounded_transport.within(0.5):
        client.post("http://dots.invalid/api/v2/payout-links", json=BODY, timeout=5.0)

    assert time.monotonic() - started < 0.8  # a timeout before connecting: nothing was sent
