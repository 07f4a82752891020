"""The Standard Webhooks verifier, checked against requests signed by the `standardwebhooks` library: an
implementation written elsewhere, so that a shared misreading of the spec cannot pass unnoticed."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from payout_links import webhooks
from payout_links.credentials import MalformedSecret, PartnerSecrets, decode_webhook_secret
from payout_links.problems import PayloadTooLarge, Problem, SignatureRejected, UnsupportedMediaType
from payout_links.router import Request
from payout_links.webhooks import TOLERANCE_SECONDS, Delivery, verified_delivery, verify
from tests.support import http_event, webhook_secret

pytestmark = pytest.mark.unit

SECRET = webhook_secret("unit-test-secret-not-real")
OLD_SECRET = webhook_secret("unit-test-old-secret-not-real")
OTHER_SECRET = webhook_secret("someone-elses-secret-not-real")
KEYS = (decode_webhook_secret(SECRET), decode_webhook_secret(OLD_SECRET))
SIGNED_AT = datetime(2026, 11, 24, 23, 50, tzinfo=UTC)
NOW = SIGNED_AT.timestamp()
BODY = json.dumps({"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z", "data": {"amount": 1}})
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


@pytest.fixture(autouse=True)
def _reference_clock_is_the_signing_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference library checks timestamps against the real clock; freeze it at the signing time."""
    import standardwebhooks.webhooks as reference

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return SIGNED_AT.astimezone(tz)

    monkeypatch.setattr(reference, "datetime", FrozenDatetime)


def signed(
    body: str = BODY, *, secret: str = SECRET, msg_id: str = MSG_ID, at: datetime = SIGNED_AT, prefix: str = "webhook-"
) -> dict[str, str]:
    """The headers a sender using the reference library sends (lower-cased, as API Gateway passes them)."""
    return {
        f"{prefix}id": msg_id,
        f"{prefix}timestamp": str(int(at.timestamp())),
        f"{prefix}signature": Webhook(secret).sign(msg_id, at, body),
    }


# What every refusal tells the caller, whatever the check that failed (the reason is only logged).
REFUSAL = {
    "type": "urn:payout-link-proxy:problem:unauthenticated",
    "title": "Authentication required",
    "status": 401,
    "detail": "The webhook signature could not be verified.",
}


def rejection(body: str, headers: dict[str, str], *, now: float = NOW) -> str:
    with pytest.raises(SignatureRejected) as caught:
        verify(body.encode(), headers, KEYS, now=now)
    assert caught.value.to_dict() == REFUSAL
    assert caught.value.headers() == {}
    return caught.value.reason


def test_a_request_signed_by_the_reference_library_is_accepted() -> None:
    assert verify(BODY.encode(), signed(), KEYS, now=NOW) == MSG_ID


def test_the_reference_library_accepts_what_we_accept() -> None:
    """The same request passes both verifiers: ours agrees with the reference on the signed content."""
    headers = signed()
    Webhook(SECRET).verify(BODY, headers)  # raises if the reference disagrees

    assert verify(BODY.encode(), headers, KEYS, now=NOW) == MSG_ID


def test_svix_header_names_are_accepted() -> None:
    assert verify(BODY.encode(), signed(prefix="svix-"), KEYS, now=NOW) == MSG_ID


def test_webhook_headers_are_read_before_svix_headers() -> None:
    headers = {**signed(prefix="svix-", msg_id="msg_other"), **signed()}

    assert verify(BODY.encode(), headers, KEYS, now=NOW) == MSG_ID


def test_any_listed_signature_may_match() -> None:
    headers = signed()
    bogus = "v1," + base64.b64encode(b"\0" * 32).decode()
    headers["webhook-signature"] = f"{bogus} {headers['webhook-signature']}"

    assert verify(BODY.encode(), headers, KEYS, now=NOW) == MSG_ID


def test_a_request_signed_with_the_partners_previous_secret_is_accepted_during_rotation() -> None:
    assert verify(BODY.encode(), signed(secret=OLD_SECRET), KEYS, now=NOW) == MSG_ID


def test_another_secret_is_refused() -> None:
    assert rejection(BODY, signed(secret=OTHER_SECRET)) == "bad-signature"


def test_a_tampered_body_is_refused() -> None:
    headers = signed()

    assert rejection(BODY.replace('"amount": 1', '"amount": 100000'), headers) == "bad-signature"


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp"])
def test_a_signature_moved_to_another_id_or_timestamp_is_refused(header: str) -> None:
    headers = signed()
    headers[header] = "msg_replayed" if header == "webhook-id" else str(int(NOW) - 1)

    assert rejection(BODY, headers) == "bad-signature"


@pytest.mark.parametrize("missing", ["id", "timestamp", "signature"])
@pytest.mark.parametrize("prefix", ["webhook-", "svix-"])
def test_a_missing_header_is_refused(prefix: str, missing: str) -> None:
    headers = signed(prefix=prefix)
    del headers[prefix + missing]

    assert rejection(BODY, headers) == "missing-header"


def test_no_signature_headers_at_all_are_refused() -> None:
    assert rejection(BODY, {"content-type": "application/json"}) == "missing-header"


def test_a_frontend_token_is_no_webhook_credential() -> None:
    headers = {**signed(), "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2ln"}
    del headers["webhook-signature"]

    assert rejection(BODY, headers) == "missing-header"


MALFORMED_SIGNATURES = ["v1", "v1,", "v1,not base64!", "v1,abc", "garbage", "v1;abc", ",", "v2,c2ln", "v1a,c2ln"]


@pytest.mark.parametrize("signature", MALFORMED_SIGNATURES)
def test_a_malformed_signature_is_refused_not_raised(signature: str) -> None:
    headers = {**signed(), "webhook-signature": signature}

    assert rejection(BODY, headers) == "malformed-signature"


@pytest.mark.parametrize("signature", ["v1", "v1,not base64!", "garbage"])
def test_the_reference_library_raises_plain_errors_on_the_same_headers(signature: str) -> None:
    """Why the verifier never hands headers to a parser that can raise: the reference library would let
    ValueError or binascii.Error escape (a 500, not a 401) on these."""
    headers = {**signed(), "webhook-signature": signature}

    with pytest.raises((ValueError, binascii.Error)):
        Webhook(SECRET).verify(BODY, headers)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (0, True),
        (-TOLERANCE_SECONDS, True),
        (TOLERANCE_SECONDS, True),
        (-TOLERANCE_SECONDS - 1, False),
        (TOLERANCE_SECONDS + 1, False),
    ],
    ids=["now", "5 min old", "5 min ahead", "just stale", "just in the future"],
)
def test_the_timestamp_tolerance_is_five_minutes_either_way(offset: int, accepted: bool) -> None:
    at = SIGNED_AT + timedelta(seconds=offset)
    headers = signed(at=at)

    if accepted:
        assert verify(BODY.encode(), headers, KEYS, now=NOW) == MSG_ID
    else:
        assert rejection(BODY, headers) == ("stale-timestamp" if offset < 0 else "future-timestamp")


def test_a_stale_request_is_refused_even_when_correctly_signed() -> None:
    assert rejection(BODY, signed(at=SIGNED_AT - timedelta(hours=1))) == "stale-timestamp"


def test_a_request_from_the_future_is_refused_even_when_correctly_signed() -> None:
    assert rejection(BODY, signed(at=SIGNED_AT + timedelta(hours=1))) == "future-timestamp"


@pytest.mark.parametrize(
    "timestamp",
    [
        "not-a-number",
        "1.7e9",
        "-1",
        "1795564200.5",
        "\uff11\uff17\uff19\uff15\uff15\uff16\uff14\uff12\uff10\uff10",
        "9" * 20,
    ],
)
def test_a_malformed_timestamp_is_refused(timestamp: str) -> None:
    headers = {**signed(), "webhook-timestamp": timestamp}

    assert rejection(BODY, headers) == "malformed-timestamp"


def test_every_candidate_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = webhooks.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    headers = signed()
    headers["webhook-signature"] = f"{headers['webhook-signature']} v1,{base64.b64encode(b'x' * 32).decode()}"

    verify(BODY.encode(), headers, KEYS, now=NOW)

    assert len(compared) == 2  # the match came first, and the other candidate was still compared


@pytest.mark.parametrize("secret", [SECRET, SECRET.rstrip("="), webhook_secret("x"), "whsec_" + "A" * 43])
def test_secrets_decode_to_the_key_the_reference_library_signs_with(secret: str) -> None:
    assert decode_webhook_secret(secret) == Webhook(secret)._whsecret


@pytest.mark.parametrize("secret", ["", "whsec_", "c2VjcmV0", "whsec_not base64!", "WHSEC_c2VjcmV0", None])
def test_unusable_secrets_are_refused(secret: str | None) -> None:
    with pytest.raises(MalformedSecret):
        decode_webhook_secret(secret)  # type: ignore[arg-type]


# --- the whole request: the order of the checks, and what a stranger can learn ------------------------------------

LIMIT = 16_384  # the deployment's MAX_BODY_BYTES
UNKNOWN = "no-such-partner"
# acme is mid-rotation (two keys), globex has one.
STORED_PARTNERS = {"acme": [SECRET, OLD_SECRET], "globex": [OTHER_SECRET]}
OVERSIZED = json.dumps({**json.loads(BODY), "padding": "x" * 17_000})  # 17 KB, over LIMIT


class SecretsManager:
    """The one call `PartnerSecrets` makes."""

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        return {"SecretString": json.dumps(STORED_PARTNERS)}


def partner_request(
    body: str = BODY,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json",
    base64_encoded: bool = False,
) -> Request:
    """POST /webhooks/acme/payout-links as API Gateway hands it over (tests.support.http_event): headers
    lower-cased, the body base64 when the gateway could not pass it as text."""
    event = http_event(
        "POST",
        "/webhooks/acme/payout-links",
        body=body,
        headers={"content-type": content_type, **(headers or {})},
        base64_encoded=base64_encoded,
    )
    return Request.from_event(event)


def deliver(partner: str, event: Request) -> Delivery:
    partners = PartnerSecrets(
        SecretsManager(), "partner-secrets", max_age_seconds=300, unknown_partner_refresh_seconds=60
    )
    return verified_delivery(event, partner, partners, max_bytes=LIMIT, now=lambda: NOW)


def refusal(partner: str, event: Request) -> Problem:
    with pytest.raises(Problem) as caught:
        deliver(partner, event)
    return caught.value


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET], ids=["current secret", "previous secret, mid-rotation"])
def test_a_signed_request_is_delivered(secret: str) -> None:
    delivery = deliver("acme", partner_request(BODY, signed(secret=secret)))

    assert delivery == Delivery(webhook_id=MSG_ID, body=BODY.encode())


def test_a_base64_body_is_verified_as_the_bytes_it_decodes_to() -> None:
    delivery = deliver("acme", partner_request(BODY, signed(), base64_encoded=True))

    assert delivery.body == BODY.encode()


UNVERIFIABLE = {
    "unsigned, small": partner_request(BODY),
    "unsigned, oversized": partner_request(OVERSIZED),
    "unsigned, oversized, not JSON content": partner_request(OVERSIZED, content_type="text/plain"),
    "malformed signature, not JSON content": partner_request(
        BODY, {**signed(), "webhook-signature": "v1,bad"}, content_type="text/plain"
    ),
    "unsigned, oversized, base64": partner_request(OVERSIZED, base64_encoded=True),
    "another secret, oversized": partner_request(OVERSIZED, signed(OVERSIZED, secret=OTHER_SECRET)),
    "stale, oversized": partner_request(OVERSIZED, signed(OVERSIZED, at=SIGNED_AT - timedelta(hours=1))),
    "malformed signature, oversized": partner_request(OVERSIZED, {**signed(OVERSIZED), "webhook-signature": "v1"}),
}


@pytest.mark.parametrize("event", list(UNVERIFIABLE.values()), ids=list(UNVERIFIABLE))
def test_an_unverifiable_request_is_the_same_401_whether_the_partner_exists_or_not(event) -> None:
    """The size and the media type are checked only once the signature verifies: neither a 413 nor a 415 tells a
    stranger that a partner name exists."""
    known, unknown = refusal("acme", event), refusal(UNKNOWN, event)

    assert known.status == unknown.status == 401
    assert known.to_dict() == unknown.to_dict()
    assert known.headers() == unknown.headers()
    assert isinstance(unknown, SignatureRejected) and unknown.reason == "unknown-partner"


def test_a_request_signed_with_a_real_partners_secret_is_refused_for_another_name() -> None:
    assert refusal(UNKNOWN, partner_request(OVERSIZED, signed(OVERSIZED))).status == 401


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_an_oversized_body_is_a_413_once_its_signature_verifies(base64_encoded: bool) -> None:
    problem = refusal("acme", partner_request(OVERSIZED, signed(OVERSIZED), base64_encoded=base64_encoded))

    assert isinstance(problem, PayloadTooLarge) and problem.status == 413


def test_the_size_comes_before_the_media_type_once_the_signature_verifies() -> None:
    oversized = partner_request(OVERSIZED, signed(OVERSIZED), content_type="text/plain")
    small = partner_request(BODY, signed(), content_type="text/plain")

    assert isinstance(refusal("acme", oversized), PayloadTooLarge)
    assert isinstance(refusal("acme", small), UnsupportedMediaType)


@pytest.mark.parametrize("partner", ["acme", UNKNOWN])
def test_a_base64_body_that_does_not_decode_cannot_be_verified_and_is_a_401(partner: str) -> None:
    # What API Gateway never sends: base64 that does not decode.
    event = replace(partner_request(BODY, signed(), base64_encoded=True), body="not base64!")

    problem = refusal(partner, event)

    assert isinstance(problem, SignatureRejected) and problem.status == 401
    assert problem.reason == ("undecodable-body" if partner == "acme" else "unknown-partner")


def test_an_unknown_partner_costs_the_same_work_as_a_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request naming an unknown partner is verified too, against a throwaway key made once per process: as
    many HMACs over the same bytes as for a partner with one secret, so the time taken does not single out the
    real names."""
    event = partner_request(OVERSIZED, signed(OVERSIZED))  # acme's secret: not globex's, nor anyone's elsewhere
    computed: list[tuple[bytes, int]] = []
    real = webhooks.hmac.new

    def spy(key: bytes, message: bytes, digest: Any) -> Any:
        computed.append((key, len(message)))
        return real(key, message, digest)

    monkeypatch.setattr(webhooks.hmac, "new", spy)
    refusal(UNKNOWN, event)
    refusal("other-unknown-partner", event)
    unknown = list(computed)
    computed.clear()
    refusal("globex", event)

    assert [size for _, size in unknown] == [size for _, size in computed] * 2
    throwaway = unknown[0][0]
    assert unknown[1][0] == throwaway  # made once, not per request
    all_keys = {decode_webhook_secret(secret) for secrets in STORED_PARTNERS.values() for secret in secrets}
    assert throwaway not in all_keys and len(throwaway) >= 32
