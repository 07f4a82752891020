"""The partners' webhook secrets: read from one Secrets Manager secret, cached per container, re-read for a
partner added since (without a cold start), and never turned into one Secrets Manager call per made-up name."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from payout_links.credentials import PartnerSecrets, decode_webhook_secret
from payout_links.problems import DependencyUnavailable
from tests.support import FUNCTION_METRICS, emitted_metrics, function_logs, webhook_secret

pytestmark = pytest.mark.unit

SECRET_ID = "payout-link-proxy/dev/partner-webhook-secrets"
ACME_NEW, ACME_OLD = webhook_secret("acme-new-not-real"), webhook_secret("acme-old-not-real")
GLOBEX = webhook_secret("globex-not-real")
MAX_AGE, UNKNOWN_REFRESH = 300, 30


class FakeSecrets:
    """`get_secret_value` as Secrets Manager answers it: the current value, which a test may change."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"SecretId": SECRET_ID}
        self.calls += 1
        if isinstance(self.value, Exception):
            raise self.value
        return {
            "Name": SECRET_ID,
            "SecretString": self.value if isinstance(self.value, str) else json.dumps(self.value),
        }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store(secrets: FakeSecrets, clock: Clock) -> PartnerSecrets:
    return PartnerSecrets(
        secrets, SECRET_ID, max_age_seconds=MAX_AGE, unknown_partner_refresh_seconds=UNKNOWN_REFRESH, clock=clock
    )


def keys(*secrets: str) -> tuple[bytes, ...]:
    return tuple(decode_webhook_secret(secret) for secret in secrets)


def test_a_partners_first_request_costs_one_fetch_and_later_ones_none(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": [ACME_NEW, ACME_OLD], "globex": GLOBEX})
    partners = store(secrets, clock)

    assert partners.keys_for("acme") == keys(ACME_NEW, ACME_OLD)
    assert secrets.calls == 1
    for _ in range(50):
        clock.now += 5
        assert partners.keys_for("acme") == keys(ACME_NEW, ACME_OLD)
        assert partners.keys_for("globex") == keys(GLOBEX)  # a bare string is one secret
    assert secrets.calls == 1


def test_the_secrets_are_read_again_once_they_age(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": [ACME_OLD]})
    partners = store(secrets, clock)
    partners.keys_for("acme")
    secrets.value = {"acme": [ACME_NEW, ACME_OLD]}  # the operator starts a rotation

    clock.now += MAX_AGE
    assert partners.keys_for("acme") == keys(ACME_NEW, ACME_OLD)
    assert secrets.calls == 2


def test_a_new_partner_works_without_a_cold_start(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": ACME_NEW})
    partners = store(secrets, clock)
    partners.keys_for("acme")
    secrets.value = {"acme": ACME_NEW, "globex": GLOBEX}  # onboarded after this container cached the secret

    clock.now += UNKNOWN_REFRESH
    assert partners.keys_for("globex") == ()  # the cached secret: its signature does not verify, so
    assert partners.keys_for("globex", refresh=True) == keys(GLOBEX)  # the secret is read again
    assert secrets.calls == 2


def test_unknown_partners_re_read_the_secret_at_most_once_per_interval(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": ACME_NEW})
    partners = store(secrets, clock)

    for name in (f"made-up-{n}" for n in range(200)):
        assert partners.keys_for(name, refresh=True) == ()
        clock.now += 0.1  # 200 names over 20 s
    assert secrets.calls == 1  # the first fetch only: the interval had not passed since it

    clock.now += UNKNOWN_REFRESH
    assert partners.keys_for("made-up-again", refresh=True) == ()
    assert partners.keys_for("and-again", refresh=True) == ()
    assert secrets.calls == 2


def test_a_failed_re_read_answers_like_an_unknown_name_and_also_waits_for_the_interval(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": ACME_NEW})
    partners = store(secrets, clock)
    partners.keys_for("acme")
    clock.now += UNKNOWN_REFRESH
    secrets.value = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetSecretValue")

    # Not a 503: a real partner with a bad signature gets 401 meanwhile, so this name must look just as unknown.
    assert partners.keys_for("made-up", refresh=True) == ()
    assert len(partners.keys_for("acme")) == 1  # the known partners are still served from the cache
    assert partners.keys_for("made-up-too", refresh=True) == ()  # from the cache, without another call
    assert secrets.calls == 2


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65, "-leading-dash", "acme corp", "acmé", "../acme"])
def test_names_no_partner_can_have_cost_no_fetch_at_all(clock: Clock, name: str) -> None:
    secrets = FakeSecrets({"acme": ACME_NEW})

    assert store(secrets, clock).keys_for(name) == ()
    assert secrets.calls == 0


def test_an_unusable_entry_leaves_the_other_partners_working(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": ACME_NEW, "broken": ["not-a-whsec-value"], "empty": [], "bad name!": GLOBEX})
    partners = store(secrets, clock)

    with function_logs() as logs, emitted_metrics() as documents:
        assert partners.keys_for("acme") == keys(ACME_NEW)
    assert partners.keys_for("broken") == ()
    assert partners.keys_for("empty") == ()
    logged = logs.getvalue()
    assert '"partner":"broken"' in logged and '"partner":"empty"' in logged
    assert "not-a-whsec-value" not in logged
    # Counted once for the read, as the entries left out, for the partner-secret-unusable alarm.
    (document,) = documents
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [{"Name": "PartnerSecretUnusable", "Unit": "Count"}]
    assert FUNCTION_METRICS["PartnerSecretUnusable"] == "Count"
    assert directive["Dimensions"] == [["service"]]
    assert document["PartnerSecretUnusable"] in (3.0, [3.0])  # broken, empty, bad name!


@pytest.mark.parametrize(
    "value",
    ['["whsec_c2VjcmV0"]', "whsec_c2VjcmV0 pasted bare", "null", '"whsec_c2VjcmV0"'],
    ids=["array", "not JSON", "null", "a string"],
)
def test_a_secret_that_is_not_a_json_object_is_a_503_that_never_shows_its_value(clock: Clock, value: str) -> None:
    partners = store(FakeSecrets(value), clock)

    with function_logs() as logs, pytest.raises(DependencyUnavailable) as caught:
        partners.keys_for("acme")

    assert caught.value.status == 503 and caught.value.headers() == {"Retry-After": "2"}
    assert "secret is malformed" in logs.getvalue()
    assert "c2VjcmV0" not in logs.getvalue() + json.dumps(caught.value.to_dict())


# --- a secret belongs to one partner ----------------------------------------------------------------------------
# The signature covers the body and the webhook-id, not the partner name in the URL: a secret two partners share
# would let one signed delivery be sent under each name, each its own caller with its own link.

SHARED = webhook_secret("shared-secret-not-real")
# The same key spelled without its base64 padding: the same secret, whatever the string says.
SHARED_UNPADDED = SHARED.rstrip("=")


def shared_secret_lines(logs: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.splitlines()]
    return [line for line in lines if line["message"] == "partner secret shared by several partners"]


def test_a_secret_configured_for_two_partners_is_refused_for_both_and_the_others_keep_working(clock: Clock) -> None:
    assert SHARED_UNPADDED != SHARED
    secrets = FakeSecrets(
        {"acme": [ACME_NEW, SHARED], "initech": SHARED_UNPADDED, "globex": GLOBEX, "hooli": [ACME_OLD, ACME_OLD]}
    )
    partners = store(secrets, clock)

    with function_logs() as logs, emitted_metrics() as documents:
        assert partners.keys_for("globex") == keys(GLOBEX)
        assert partners.keys_for("acme") == ()  # even its key no one shares: the partner is misconfigured
        assert partners.keys_for("initech") == ()
        assert partners.keys_for("hooli") == keys(ACME_OLD, ACME_OLD)  # a key listed twice by one partner is its own

    assert secrets.calls == 1
    (line,) = shared_secret_lines(logs.getvalue())
    assert line["level"] == "ERROR"
    assert line["partners"] == ["acme", "initech"]
    for value in (SHARED, SHARED_UNPADDED, SHARED.removeprefix("whsec_"), SHARED_UNPADDED.removeprefix("whsec_")):
        assert value not in logs.getvalue()
    (document,) = documents
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [{"Name": "PartnerSecretShared", "Unit": "Count"}]
    assert FUNCTION_METRICS["PartnerSecretShared"] == "Count"
    assert directive["Dimensions"] == [["service"]]
    assert document["PartnerSecretShared"] in (2.0, [2.0])  # the partners refused


def test_a_shared_secret_is_reported_once_per_read_of_the_secret_not_per_request(clock: Clock) -> None:
    secrets = FakeSecrets({"acme": SHARED, "initech": SHARED, "globex": GLOBEX, "umbrella": SHARED})
    partners = store(secrets, clock)

    with function_logs() as logs, emitted_metrics() as documents:
        for _ in range(20):
            clock.now += 1
            assert partners.keys_for("globex") == keys(GLOBEX)
            assert partners.keys_for("acme") == ()
        assert secrets.calls == 1  # the refused partners re-read the secret as an unknown name does: once a while
        clock.now += UNKNOWN_REFRESH
        assert partners.keys_for("umbrella", refresh=True) == ()
        assert secrets.calls == 2

    lines = shared_secret_lines(logs.getvalue())
    assert [line["partners"] for line in lines] == [["acme", "initech", "umbrella"]] * 2
    assert [document["PartnerSecretShared"] for document in documents] in ([3.0, 3.0], [[3.0], [3.0]])


def test_a_secret_no_partner_shares_logs_and_counts_nothing(clock: Clock) -> None:
    partners = store(FakeSecrets({"acme": [ACME_NEW, ACME_OLD], "globex": GLOBEX}), clock)

    with function_logs() as logs, emitted_metrics() as documents:
        assert partners.keys_for("acme") == keys(ACME_NEW, ACME_OLD)

    assert shared_secret_lines(logs.getvalue()) == [] and documents == []


def test_the_partners_named_in_the_log_line_are_bounded(clock: Clock) -> None:
    names = ["a" * 64, "b" * 64]
    partners = store(FakeSecrets(dict.fromkeys(names, SHARED)), clock)

    with function_logs() as logs, emitted_metrics():
        assert partners.keys_for(names[0]) == ()

    (line,) = shared_secret_lines(logs.getvalue())
    assert line["partners"] == names and all(len(name) <= 64 for name in line["partners"])


# HMAC pads a key shorter than its block (64 bytes for SHA-256) with zero bytes, and hashes a longer one first: keys
# whose bytes differ can still sign every delivery alike. Such a pair is one secret held by two partners.
_SHORT = b"shared-secret-not-real"
_LONG = b"a-long-shared-secret-not-real-".ljust(80, b"x")
_HMAC_EQUIVALENT_PAIRS = {
    "zero padded": (_SHORT, _SHORT + b"\x00\x00"),
    "long key and its digest": (_LONG, hashlib.sha256(_LONG).digest()),
}


@pytest.mark.parametrize("pair", list(_HMAC_EQUIVALENT_PAIRS.values()), ids=list(_HMAC_EQUIVALENT_PAIRS))
def test_keys_that_hmac_makes_one_key_are_a_shared_secret_and_refused_for_both(clock: Clock, pair) -> None:
    first, second = pair
    assert first != second
    # Whatever one partner signs, the other's key verifies: one secret, two names.
    signed = b"msg_2a.1700000000.{}"
    assert hmac.new(first, signed, hashlib.sha256).digest() == hmac.new(second, signed, hashlib.sha256).digest()
    secrets = FakeSecrets(
        {
            "acme": "whsec_" + base64.b64encode(first).decode(),
            "initech": "whsec_" + base64.b64encode(second).decode(),
            "globex": GLOBEX,
        }
    )
    partners = store(secrets, clock)

    with function_logs(), emitted_metrics():
        assert partners.keys_for("globex") == keys(GLOBEX)
        assert partners.keys_for("acme") == ()
        assert partners.keys_for("initech") == ()


class SlowSecrets(FakeSecrets):
    """Secrets Manager at a realistic round trip, slowed to be seen: each read takes `delay` seconds."""

    delay = 0.2

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        time.sleep(self.delay)
        return super().get_secret_value(**kwargs)


def test_a_made_up_partner_name_takes_as_long_as_a_real_ones_once_per_refresh_interval_too(clock: Clock) -> None:
    """A refusal must not tell a stranger which partner names exist. Once the refresh interval has passed, a probe
    with a bad signature waits for one Secrets Manager read, whether it names a real partner or a made-up one (what
    `verified_delivery` asks for: the cached keys, then, the signature refused, the keys read again); it once did
    for an unknown name alone, so one probe per interval (30 s) told real names from made-up ones by time alone."""
    partners = store(SlowSecrets({"globex": GLOBEX}), clock)
    partners.keys_for("globex")  # the cold read, paid by whoever comes first

    def took(name: str) -> float:
        clock.now += UNKNOWN_REFRESH  # a prober waits out the interval before each probe
        started = time.perf_counter()
        partners.keys_for(name)
        partners.keys_for(name, refresh=True)  # the signature did not verify
        return time.perf_counter() - started

    real, made_up = took("globex"), took("not-a-partner")

    assert abs(made_up - real) < SlowSecrets.delay / 2, (real, made_up)
