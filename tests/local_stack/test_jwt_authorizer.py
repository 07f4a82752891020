"""The local gateway checks tokens as API Gateway's JWT authorizer does (local_stack/core/jwt_authorizer.py), against
a real issuer on loopback (local_stack/issuer.py): every refusal is API Gateway's own 401 or 403, with its
`www-authenticate`, and the function is never invoked for it.

The gateway runs in this process on a loopback port, its function a recorder of the events it is handed."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from local_stack.core.gateway import LocalHttpApi, Route
from local_stack.core.jwt_authorizer import (
    IssuerKeys,
    JwtAuthorizer,
    JwtConfiguration,
    KeysUnavailable,
    bearer_token,
)
from local_stack.issuer import DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH, LocalIssuer

pytestmark = pytest.mark.integration

AUDIENCE = "payout-link-proxy"
ROUTE = Route("POST", "/payout-links", jwt_protected=True, scopes=("payouts:write",))
OPEN_ROUTE = Route("GET", "/open", jwt_protected=False)
MISSING = "Bearer"


def invalid(description: str) -> str:
    return f'Bearer scope="" error="invalid_token" error_description="{description}"'


class Recorder:
    """The function behind the gateway: records each event it is handed and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], request_id: str, *, start_by: float) -> dict[str, Any]:
        with self._lock:
            self.events.append(event)
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "served"}


class Gateway:
    def __init__(self, issuer: str, audiences: tuple[str, ...] = (AUDIENCE,), keys: Any = None) -> None:
        self.function = Recorder()
        self.authorizer = JwtAuthorizer(JwtConfiguration(issuer, audiences), keys)
        self.server = LocalHttpApi(0, [ROUTE, OPEN_ROUTE], self.function, authorizer=self.authorizer)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def post(self, authorization: str | None = None, **headers: str) -> httpx.Response:
        if authorization is not None:
            headers["authorization"] = authorization
        return self.http.post("/payout-links", content=b"{}", headers=headers)

    def stop(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIssuer]:
    """The module's issuer, which the gateway trusts."""
    with LocalIssuer(audience=AUDIENCE) as running:
        yield running


@pytest.fixture(scope="module")
def shared_gateway(idp: LocalIssuer) -> Iterator[Gateway]:
    running = Gateway(idp.url)
    yield running
    running.stop()


@pytest.fixture
def gateway(shared_gateway: Gateway) -> Gateway:
    """The module's gateway, its function's record of events empty."""
    shared_gateway.function.events.clear()
    return shared_gateway


@pytest.fixture
def own_idp() -> Iterator[LocalIssuer]:
    """An issuer of this test's own: its request counts are this test's, and it may be stopped."""
    with LocalIssuer(audience=AUDIENCE) as running:
        yield running


def mint(issuer: LocalIssuer, **claims: Any) -> str:
    return "Bearer " + issuer.mint({"sub": "ada", "scope": "payouts:write", **claims})


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_refused(answer: httpx.Response, gateway: Gateway, challenge: str, status: int = 401) -> None:
    message = "Unauthorized" if status == 401 else "Forbidden"
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"message": message}  # API Gateway's own body, never the function's
    assert answer.headers["www-authenticate"] == challenge
    assert answer.headers["apigw-requestid"]
    assert gateway.function.events == []  # the function never ran


# --- accepted ---------------------------------------------------------------------------------------------------


def test_a_token_of_the_issuer_reaches_the_function_with_its_claims_as_strings(gateway, idp):
    answer = gateway.post(mint(idp, groups=["a", "b"], email_verified=True))

    assert (answer.status_code, answer.text) == (200, "served")
    (event,) = gateway.function.events
    jwt_context = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_context["claims"]["sub"] == "ada"
    assert jwt_context["claims"]["iss"] == idp.url
    assert jwt_context["claims"]["groups"] == "[a b]" and jwt_context["claims"]["email_verified"] == "true"
    assert jwt_context["claims"]["exp"].isdigit()
    assert jwt_context["scopes"] == ["payouts:write"]


@pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "BEARER  ", ""], ids=["Bearer", "bearer", "BEARER", "none"])
def test_the_token_may_come_with_or_without_the_bearer_prefix(gateway, idp, scheme):
    """AWS: the identity source "can include only the token, or the token prefixed with Bearer"."""
    token = mint(idp).removeprefix("Bearer ")

    assert gateway.post(scheme + token).status_code == 200


@pytest.mark.parametrize("audience", [AUDIENCE, ["someone-else", AUDIENCE]], ids=["string", "list"])
def test_an_aud_that_names_one_of_the_audiences_is_accepted(gateway, idp, audience):
    assert gateway.post(mint(idp, aud=audience)).status_code == 200


def test_a_client_id_is_the_audience_of_a_token_without_aud(gateway, idp):
    """AWS: "API Gateway validates client_id only if aud is not present" (Amazon Cognito's access tokens)."""
    token = "Bearer " + idp.mint({"client_id": AUDIENCE, "scope": "payouts:write"}, omit=("aud",))

    assert gateway.post(token).status_code == 200


def test_a_token_without_nbf_or_iat_is_accepted(gateway, idp):
    token = "Bearer " + idp.mint({"sub": "ada", "scope": "payouts:write"}, omit=("iat",))

    assert gateway.post(token).status_code == 200


def test_a_route_without_the_authorizer_takes_no_token(gateway):
    answer = gateway.http.get("/open", headers={"authorization": "Bearer garbage"})

    assert answer.status_code == 200
    assert "authorizer" not in gateway.function.events[0]["requestContext"]


# --- refused: 401 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "bearer"])
def test_no_token_is_api_gateways_401_with_a_bare_bearer_challenge(gateway, authorization):
    assert_refused(gateway.post(authorization), gateway, MISSING)


@pytest.mark.parametrize(
    ("authorization", "description"),
    [
        ("Bearer garbage", "token contains an invalid number of segments"),
        ("Bearer a.b", "token contains an invalid number of segments"),
        ("Bearer a.b.c.d", "token contains an invalid number of segments"),
        ("Basic dXNlcjpwYXNz", "token contains an invalid number of segments"),
        ("Bearer !!.e30.c2ln", "token is malformed"),
        ("Bearer e30.e30.c2l+", "token is malformed"),
        ("Bearer e30=.e30.c2ln", "token is malformed"),
        ("Bearer " + b64([1, 2]) + ".e30.c2ln", "token is malformed"),
        ("Bearer " + b64(b"\xff\xfe") + ".e30.c2ln", "token is malformed"),
        ("Bearer e30." + b64("claims") + ".c2ln", "token is malformed"),
        ("Bearer " + b64({"typ": "JWT"}) + ".e30.c2ln", "signing method (alg) is unspecified"),
    ],
    ids=[
        "one part",
        "two parts",
        "four parts",
        "another scheme",
        "not base64",
        "base64 but not url-safe",
        "padded",
        "header an array",
        "header not UTF-8",
        "payload a string",
        "no alg",
    ],
)
def test_a_malformed_token_is_refused(gateway, authorization, description):
    assert_refused(gateway.post(authorization), gateway, invalid(description))


def test_a_token_signed_by_another_key_under_the_issuers_kid_is_refused(gateway, idp):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "ada", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": time.time() + 300}
    forged = jwt.encode(claims, forger, algorithm="RS256", headers={"kid": idp.kid})

    assert_refused(gateway.post("Bearer " + forged), gateway, invalid("signature is invalid"))


def test_a_token_whose_claims_were_changed_after_signing_is_refused(gateway, idp):
    header, _, signature = mint(idp).removeprefix("Bearer ").split(".")
    changed = b64({"sub": "mallory", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": 4102444800})

    assert_refused(gateway.post(f"Bearer {header}.{changed}.{signature}"), gateway, invalid("signature is invalid"))


def test_an_hs256_token_is_refused_whatever_its_key(gateway, idp):
    """API Gateway verifies RSA-based algorithms only: an HMAC token is refused before any key is looked at, even
    one whose secret is the issuer's public key (the classic algorithm confusion)."""
    claims = {"sub": "ada", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": time.time() + 300}
    token = jwt.encode(claims, "shared-secret-not-a-key-0123456789abcdef", algorithm="HS256", headers={"kid": idp.kid})

    assert_refused(gateway.post("Bearer " + token), gateway, invalid("signing method HS256 is invalid"))


def test_an_unsigned_token_alg_none_is_refused(gateway, idp):
    claims = {"sub": "ada", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": time.time() + 300}
    token = f"{b64({'alg': 'none', 'kid': idp.kid})}.{b64(claims)}."

    assert_refused(gateway.post("Bearer " + token), gateway, invalid("signing method none is invalid"))


def test_an_es256_token_is_refused_as_observed_from_api_gateway(gateway, idp):
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {"sub": "ada", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": time.time() + 300}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": idp.kid})

    assert_refused(gateway.post("Bearer " + token), gateway, invalid("signing method ES256 is invalid"))


def test_a_token_without_a_kid_or_with_a_kid_the_issuer_does_not_have_is_refused(gateway, idp):
    claims = {"sub": "ada", "scope": "payouts:write", "iss": idp.url, "aud": AUDIENCE, "exp": time.time() + 300}
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    no_kid = gateway.post("Bearer " + jwt.encode(claims, signer, algorithm="RS256"))
    unknown = gateway.post("Bearer " + jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "made-up"}))

    assert_refused(no_kid, gateway, invalid("the token has no kid"))
    assert_refused(unknown, gateway, invalid("the token's kid is not a key of the issuer"))


def test_a_token_of_another_issuer_is_refused(gateway):
    with LocalIssuer(audience=AUDIENCE) as other:
        answer = gateway.post(mint(other))

    assert_refused(answer, gateway, invalid("the token's kid is not a key of the issuer"))


def test_a_token_whose_iss_is_not_the_issuer_is_refused(gateway, idp):
    """Signed with the issuer's own key, but naming another issuer, or none."""
    for iss in (idp.url + "/", "https://issuer.example.test", None):
        assert_refused(gateway.post(mint(idp, iss=iss)), gateway, invalid("the token does not have a valid issuer"))
    no_iss = "Bearer " + idp.mint({"sub": "ada", "scope": "payouts:write"}, omit=("iss",))
    assert_refused(gateway.post(no_iss), gateway, invalid("the token does not have a valid issuer"))


@pytest.mark.parametrize(
    ("claims", "omit"),
    [
        ({"aud": "someone-else"}, ()),
        ({"aud": ["someone-else", "another"]}, ()),
        ({"aud": []}, ()),
        ({"aud": None}, ()),
        ({"aud": "someone-else", "client_id": AUDIENCE}, ()),
        ({"client_id": "someone-else"}, ("aud",)),
        ({}, ("aud",)),
    ],
    ids=[
        "another aud",
        "a list of others",
        "an empty list",
        "aud null",
        "a wrong aud beside a matching client_id",
        "a client_id that is no audience",
        "neither aud nor client_id",
    ],
)
def test_a_token_for_another_audience_is_refused_as_aws_documents(gateway, idp, claims, omit):
    """The documented answer: `the token does not have a valid audience`. With `aud` present, `client_id` is not
    looked at."""
    token = "Bearer " + idp.mint({"sub": "ada", "scope": "payouts:write", **claims}, omit=omit)

    assert_refused(gateway.post(token), gateway, invalid("the token does not have a valid audience"))


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"exp": -60}, "Token is expired"),
        ({"exp": 0}, "Token is expired"),
        ({"nbf": 60}, "Token is not valid yet"),
        ({"iat": 60}, "Token used before issued"),
        ({"exp": "tomorrow"}, "token is malformed"),
        ({"nbf": True}, "token is malformed"),
    ],
    ids=["expired", "expiring now", "nbf in the future", "iat in the future", "exp not a number", "nbf a boolean"],
)
def test_a_token_outside_its_time_is_refused(gateway, idp, claims, description):
    now = int(time.time())
    timed = {
        name: now + value if isinstance(value, int) and not isinstance(value, bool) else value
        for name, value in claims.items()
    }

    assert_refused(gateway.post(mint(idp, **timed)), gateway, invalid(description))


def test_a_token_without_exp_is_refused(gateway, idp):
    token = "Bearer " + idp.mint({"sub": "ada", "scope": "payouts:write"}, omit=("exp",))

    assert_refused(gateway.post(token), gateway, invalid("the token has no exp"))


def test_nbf_and_iat_of_this_very_second_are_not_in_the_future(gateway, idp):
    now = int(time.time())

    assert gateway.post(mint(idp, nbf=now, iat=now)).status_code == 200


# --- refused: 403 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims", [{"scope": "payouts:read profile"}, {"scope": None}, {"scope": None, "scp": ["payouts:read"]}], ids=str
)
def test_a_valid_token_without_the_routes_scope_is_api_gateways_403(gateway, idp, claims):
    challenge = (
        'Bearer scope="payouts:write" error="insufficient_scope" error_description="expected scopes: [payouts:write]"'
    )

    assert_refused(gateway.post(mint(idp, **claims)), gateway, challenge, status=403)


def test_an_invalid_token_without_the_scope_is_a_401_not_a_403(gateway, idp):
    assert_refused(
        gateway.post(mint(idp, scope="profile", aud="x")), gateway, invalid("the token does not have a valid audience")
    )


# --- the issuer's keys ------------------------------------------------------------------------------------------


def test_the_keys_are_found_by_discovery_wherever_the_issuer_publishes_them():
    with LocalIssuer(audience=AUDIENCE, jwks_path="/oauth2/v1/keys") as custom:
        gateway = Gateway(custom.url)
        try:
            answer = gateway.post(mint(custom))
        finally:
            gateway.stop()

    assert answer.status_code == 200
    assert custom.requests[DISCOVERY_PATH] == 1 and custom.requests["/oauth2/v1/keys"] == 1
    assert custom.requests[JWKS_PATH] == 0  # never guessed


def test_the_keys_are_fetched_once_and_kept(own_idp):
    gateway = Gateway(own_idp.url)
    try:
        for _ in range(5):
            assert gateway.post(mint(own_idp)).status_code == 200
    finally:
        gateway.stop()

    assert (own_idp.requests[DISCOVERY_PATH], own_idp.requests[JWKS_PATH]) == (1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unknown_kid_fetches_the_keys_again_at_most_once_per_interval(own_idp):
    """A flood of made-up kids reaches the issuer once per KEYS_REFETCH_SECONDS, not once per request."""
    clock = Clock()
    keys = IssuerKeys(own_idp.url, refetch_seconds=10, clock=clock)

    assert keys.key(own_idp.kid) is not None
    for number in range(50):
        assert keys.key(f"made-up-{number}") is None
    assert own_idp.requests[JWKS_PATH] == 1  # the first fetch was less than the interval ago

    clock.now += 10
    for number in range(50):
        assert keys.key(f"made-up-again-{number}") is None
    assert own_idp.requests[JWKS_PATH] == 2
    assert own_idp.requests[DISCOVERY_PATH] == 2  # each fetch is discovery, then the key set


def test_a_rotated_key_is_found_when_a_token_names_it(own_idp):
    """The issuer's new key (here: another issuer serving on the same port after a restart) is fetched as soon as
    a token names it, once the refetch interval since the last fetch has passed."""
    clock = Clock()
    keys = IssuerKeys(own_idp.url, refetch_seconds=10, clock=clock)
    authorizer = JwtAuthorizer(JwtConfiguration(own_idp.url, (AUDIENCE,)), keys)
    assert authorizer.authorize(mint(own_idp)).__class__.__name__ == "Authorized"
    port = own_idp.port
    own_idp.stop()
    with LocalIssuer(audience=AUDIENCE, port=port) as restarted:
        clock.now += 10
        verdict = authorizer.authorize(mint(restarted))

    assert verdict.__class__.__name__ == "Authorized"


def test_the_keys_are_fetched_again_after_two_hours(own_idp):
    clock = Clock()
    keys = IssuerKeys(own_idp.url, clock=clock)
    keys.key(own_idp.kid)
    clock.now += 2 * 60 * 60 - 1
    keys.key(own_idp.kid)
    assert own_idp.requests[JWKS_PATH] == 1

    clock.now += 1
    keys.key(own_idp.kid)
    assert own_idp.requests[JWKS_PATH] == 2


def test_an_issuer_that_cannot_be_reached_is_a_401_and_is_asked_again_only_after_the_interval(own_idp):
    clock = Clock()
    port = own_idp.port
    own_idp.stop()
    keys = IssuerKeys(f"http://127.0.0.1:{port}", refetch_seconds=10, clock=clock, timeout=2)
    authorizer = JwtAuthorizer(JwtConfiguration(f"http://127.0.0.1:{port}", (AUDIENCE,)), keys)
    with LocalIssuer(audience=AUDIENCE) as signer:  # any token with a kid: the keys are never had
        token = mint(signer)

    first = authorizer.authorize(token)
    with pytest.raises(KeysUnavailable):
        keys.key("any")  # within the interval: not fetched again

    assert (first.status, first.www_authenticate) == (401, invalid("the issuer's keys could not be fetched"))


def test_keys_once_fetched_are_kept_while_the_issuer_is_down(own_idp):
    clock = Clock()
    keys = IssuerKeys(own_idp.url, refetch_seconds=10, clock=clock, timeout=2)
    authorizer = JwtAuthorizer(JwtConfiguration(own_idp.url, (AUDIENCE,)), keys)
    token = mint(own_idp)
    assert authorizer.authorize(token).__class__.__name__ == "Authorized"
    own_idp.stop()
    clock.now += 2 * 60 * 60  # stale: a fetch is tried, fails, and the keys it had still serve

    assert authorizer.authorize(token).__class__.__name__ == "Authorized"


def test_an_issuer_url_without_a_discovery_document_gives_no_keys(own_idp):
    """An issuer URL under which nothing is published (here a path of the local issuer's) gives no keys."""
    keys = IssuerKeys(own_idp.url + TOKEN_PATH, timeout=2)

    with pytest.raises(KeysUnavailable):
        keys.key(own_idp.kid)


# --- pieces -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer", None), ("Bearer x.y.z", "x.y.z"), ("x.y.z", "x.y.z"), ("bearer  t ", "t")],
)
def test_the_token_is_the_header_alone_or_after_bearer(header, token):
    assert bearer_token(header) == token


def test_the_gateway_refuses_to_serve_protected_routes_without_an_authorizer():
    with pytest.raises(ValueError, match="authorizer"):
        LocalHttpApi(0, [ROUTE], Recorder())


def test_the_issuer_mints_from_loopback_and_publishes_its_key(idp):
    answer = httpx.post(idp.url + TOKEN_PATH, json={"sub": "ada", "scope": "payouts:read", "ttl": 60})
    token = answer.json()["access_token"]

    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    assert answer.json()["expires_in"] == 60
    discovery = httpx.get(idp.url + DISCOVERY_PATH).json()
    assert discovery["issuer"] == idp.url and discovery["jwks_uri"] == idp.url + JWKS_PATH
    (published,) = httpx.get(discovery["jwks_uri"]).json()["keys"]
    assert published["kid"] == idp.kid == jwt.get_unverified_header(token)["kid"]
    assert "d" not in published  # the public half only
    key = jwt.PyJWK(published).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=idp.url)
    assert claims["sub"] == "ada" and claims["scope"] == "payouts:read" and claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("asked", [[1], {"ttl": 0}, {"ttl": "1h"}, {"claims": "x"}, {"admin": True}], ids=str)
def test_the_issuer_refuses_a_request_it_cannot_mint(idp, asked):
    assert httpx.post(idp.url + TOKEN_PATH, json=asked).status_code == 400


def test_two_issuers_have_two_keys(idp):
    with LocalIssuer(audience=AUDIENCE) as other:
        assert other.kid != idp.kid and other.jwks() != idp.jwks()


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": float("inf")},
        {"exp": float("nan")},
        {"nbf": float("nan")},
        {"iat": float("-inf")},
        {"sub": float("inf")},
    ],
    ids=["exp Infinity", "exp NaN", "nbf NaN", "iat -Infinity", "sub Infinity"],
)
def test_a_token_whose_json_has_nan_or_infinity_is_malformed_as_api_gateway_reads_it(gateway, idp, claims):
    """`NaN` and `Infinity` are not JSON (RFC 8259): API Gateway's parser refuses such a token. Python's `json` takes
    them, and then an `exp` of Infinity (or NaN, which no comparison finds expired) never expires, and a `sub` of
    1e999 reaches the function as the string "Infinity", the caller `user:Infinity` of another token."""
    assert_refused(gateway.post(mint(idp, **claims)), gateway, invalid("token is malformed"))


def test_the_issuer_mints_for_its_own_host_only_not_for_a_rebound_name(idp):
    """A web page can rebind its own name to 127.0.0.1 and then read `POST /token`'s answer as same-origin: the
    loopback check sees the browser's own address. The issuer must refuse a request whose Host is not its own."""
    answer = httpx.post(
        idp.url + TOKEN_PATH,
        content=b'{"sub": "ada", "scope": "payouts:write"}',
        headers={
            "host": f"rebind.attacker.example:{idp.port}",
            "origin": f"http://rebind.attacker.example:{idp.port}",
            "content-type": "text/plain",
        },
    )

    assert answer.status_code in (403, 421), answer.text
    assert "access_token" not in answer.text
