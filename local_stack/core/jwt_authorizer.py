"""API Gateway's JWT authorizer for HTTP APIs, as the local gateway runs it before any function does.

What AWS documents (the developer guide's "Control access to HTTP APIs with JWT authorizers" and "Troubleshooting
issues with HTTP API JWT authorizers"), and what is done here:

1. The token is the identity source's value, the `Authorization` header: the token alone, or the token prefixed
   with `Bearer`.
2. It is decoded, and its algorithm and signature are checked with the public key fetched from the issuer's
   `jwks_uri`. Only RSA-based algorithms are supported: RS256, RS384 and RS512 here (whether API Gateway also takes
   the RSA-PSS ones is not documented; they are refused). API Gateway can cache the keys for two hours.
3. The claims: `kid` (a header claim) must name a key of the `jwks_uri`; `iss` must equal the configured issuer;
   `aud`, or `client_id` when there is no `aud` (only then), must match one of the configured audiences; `exp` must
   be after the current time, `nbf` and `iat` before it; `scope` or `scp` must hold one of the route's scopes.
   A token with no `exp` is refused (AWS does not say; no time is after it); one without `nbf` or `iat` is not
   (access tokens without `nbf` are common, Amazon Cognito's among them). "Before the current time" is read to the
   second, as tokens write times: a token issued this second is not from the future.

How API Gateway answers a refusal, in its own body and header (the function never runs):

- no token: `401 {"message":"Unauthorized"}`, `www-authenticate: Bearer` (observed and published by users of
  deployed APIs; not in AWS's documentation);
- an invalid token: `401 {"message":"Unauthorized"}`, `www-authenticate: Bearer scope="" error="invalid_token"
  error_description="..."`. The form, and the description `the token does not have a valid audience`, are
  AWS's documented example; `token contains an invalid number of segments` and `signing method ES256 is invalid`
  were observed from deployed APIs. The other descriptions are this module's wording (`DESCRIPTIONS`);
- a valid token without one of the route's scopes: `403 {"message":"Forbidden"}`, `www-authenticate: Bearer
  scope="a b" error="insufficient_scope" error_description="expected scopes: [a b]"` (observed, not documented).

The keys are found as API Gateway finds them: OpenID discovery (`{issuer}/.well-known/openid-configuration`), then
its `jwks_uri`. They are kept for two hours; a `kid` they do not hold makes them fetched again, at most once per
`KEYS_REFETCH_SECONDS` (a flood of made-up `kid`s reaches the issuer no more often than that), and so does a failed
fetch. Keys that could be fetched once are kept while the issuer cannot be reached. Without any keys a token is
refused with the 401 of an invalid token (AWS does not document this case).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jwt.algorithms import RSAAlgorithm

from local_stack.core.template import resolve

# The RSA algorithms of JWS (RFC 7518) with PKCS #1 v1.5 signatures: the ones API Gateway verifies.
RSA_ALGORITHMS = {"RS256": RSAAlgorithm.SHA256, "RS384": RSAAlgorithm.SHA384, "RS512": RSAAlgorithm.SHA512}
KEYS_CACHE_SECONDS = 2 * 60 * 60.0
KEYS_REFETCH_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024

# Each refusal's error_description: AWS's where it is documented or was observed, this module's otherwise.
DESCRIPTIONS = {
    "segments": "token contains an invalid number of segments",  # observed
    "malformed": "token is malformed",
    "no_alg": "signing method (alg) is unspecified",
    "no_kid": "the token has no kid",
    "unknown_kid": "the token's kid is not a key of the issuer",
    "no_keys": "the issuer's keys could not be fetched",
    "key": "the issuer's key for the token's kid is not an RSA signing key for its alg",
    "signature": "signature is invalid",
    "issuer": "the token does not have a valid issuer",
    "audience": "the token does not have a valid audience",  # documented
    "no_exp": "the token has no exp",
    "expired": "Token is expired",
    "not_yet": "Token is not valid yet",
    "issued_later": "Token used before issued",
}


@dataclass(frozen=True)
class JwtConfiguration:
    """An HTTP API JWT authorizer's `JwtConfiguration`: the issuer trusted and the audiences accepted."""

    issuer: str
    audiences: tuple[str, ...]

    @classmethod
    def from_template(
        cls,
        template: dict[str, Any],
        *,
        api: str | None = None,
        issuer: str | None = None,
        audiences: Sequence[str] | None = None,
    ) -> JwtConfiguration | None:
        """The JWT authorizer of the template's HTTP API `api` (by default its first), None when it has none;
        `issuer` and `audiences` replace the configured ones (what a deployment does by setting the parameters they
        come from). A value that does not resolve locally (a parameter without a default) must be given."""
        for name, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Serverless::HttpApi" or api not in (None, name):
                continue
            authorizers = resource.get("Properties", {}).get("Auth", {}).get("Authorizers", {})
            configurations = [item["JwtConfiguration"] for item in authorizers.values() if "JwtConfiguration" in item]
            if not configurations:
                return None
            if len(configurations) > 1:
                raise ValueError(f"{name} has {len(configurations)} JWT authorizers; one is emulated")
            (configuration,) = configurations
            if issuer is None:
                issuer = _resolved(configuration.get("issuer"), template, "issuer")
            if audiences is None:
                audiences = _resolved(configuration.get("audience"), template, "audience")
            if isinstance(audiences, str):
                audiences = [audiences]
            return cls(str(issuer), tuple(str(audience) for audience in audiences or ()))
        return None


def _resolved(value: Any, template: dict[str, Any], what: str) -> Any:
    try:
        return resolve(value, template)
    except ValueError:
        raise ValueError(f"the JWT authorizer's {what} ({value}) has no value locally: give one") from None


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched (discovery or the key set)."""


class KeySource(Protocol):
    def key(self, kid: str) -> Mapping[str, Any] | None:
        """The JWK named `kid`, None when the issuer has none; `KeysUnavailable` when no keys can be had."""
        ...


class StaticKeys:
    """A key set given in hand (a JWKS document): for checking tokens with no issuer to ask."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _keys_by_kid(jwks)

    def key(self, kid: str) -> Mapping[str, Any] | None:
        return self._keys.get(kid)


class IssuerKeys:
    """An issuer's signing keys as API Gateway finds them: discovery, then the `jwks_uri`; cached, refetched for an
    unknown `kid` or after a failure at most once per `refetch_seconds`."""

    def __init__(
        self,
        issuer: str,
        *,
        cache_seconds: float = KEYS_CACHE_SECONDS,
        refetch_seconds: float = KEYS_REFETCH_SECONDS,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Mapping[str, Any]] | None = None
        self._fetched_at = 0.0
        self._tried_at: float | None = None

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def key(self, kid: str) -> Mapping[str, Any] | None:
        with self._lock:
            now = self._clock()
            stale = self._keys is None or now - self._fetched_at >= self.cache_seconds
            unknown = self._keys is not None and kid not in self._keys
            may_try = self._tried_at is None or now - self._tried_at >= self.refetch_seconds
            if (stale or unknown) and may_try:
                self._tried_at = now
                try:
                    self._keys, self._fetched_at = self._fetch(), now
                except KeysUnavailable:
                    if self._keys is None:
                        raise
            if self._keys is None:
                raise KeysUnavailable(f"no keys from {self.issuer} yet (tried less than {self.refetch_seconds} s ago)")
            return self._keys.get(kid)

    def _fetch(self) -> dict[str, Mapping[str, Any]]:
        discovery = _get_json(self.discovery_url, self.timeout)
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable(f"{self.discovery_url} names no jwks_uri")
        return _keys_by_kid(_get_json(jwks_uri, self.timeout))


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    if not url.startswith(("https://", "http://")):
        raise KeysUnavailable(f"{url} is not an http(s) URL")
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) only
            document = json.loads(answer.read(MAX_DOCUMENT_BYTES))
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors; a JSON error a ValueError
        raise KeysUnavailable(f"{url}: {exc}") from None
    if not isinstance(document, dict):
        raise KeysUnavailable(f"{url} answered without a JSON object")
    return document


def _keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise KeysUnavailable("the key set has no keys")
    return {key["kid"]: key for key in keys if isinstance(key, dict) and isinstance(key.get("kid"), str)}


@dataclass(frozen=True)
class Authorized:
    """A token the authorizer accepted: its claims (as decoded) and the scopes it grants."""

    claims: dict[str, Any]
    scopes: list[str]


@dataclass(frozen=True)
class Refused:
    """API Gateway's own answer instead of the function's: `{"message": message}` with `www-authenticate`."""

    status: int
    message: str
    www_authenticate: str


MISSING_TOKEN = Refused(401, "Unauthorized", "Bearer")


def invalid_token(description: str) -> Refused:
    return Refused(401, "Unauthorized", f'Bearer scope="" error="invalid_token" error_description="{description}"')


def insufficient_scope(scopes: Sequence[str]) -> Refused:
    listed = " ".join(scopes)
    challenge = f'Bearer scope="{listed}" error="insufficient_scope" error_description="expected scopes: [{listed}]"'
    return Refused(403, "Forbidden", challenge)


def granted_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The scopes a token grants, in order and once each, from `scope` (space-separated) or `scp` (a list or a
    string), as API Gateway reads them."""
    granted: list[str] = []
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        items = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        granted.extend(item for item in items if isinstance(item, str) and item not in granted)
    return granted


class _Invalid(Exception):
    def __init__(self, reason: str, description: str | None = None) -> None:
        super().__init__(reason)
        self.description = description or DESCRIPTIONS[reason]


class JwtAuthorizer:
    """Checks a request's `Authorization` header as the HTTP API's JWT authorizer does (see the module's doc)."""

    def __init__(
        self, configuration: JwtConfiguration, keys: KeySource | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.configuration = configuration
        self.keys = keys if keys is not None else IssuerKeys(configuration.issuer)
        self._clock = clock

    def authorize(self, authorization: str | None, scopes: Sequence[str] = ()) -> Authorized | Refused:
        """The header's token accepted for a route that needs one of `scopes` (none: any valid token), or API
        Gateway's refusal: 401 for no token or an invalid one, 403 for a valid one without the scopes."""
        outcome = self.verify(authorization)
        if isinstance(outcome, Authorized) and scopes and not set(outcome.scopes) & set(scopes):
            return insufficient_scope(scopes)
        return outcome

    def verify(self, authorization: str | None) -> Authorized | Refused:
        """The header's token accepted, whatever its scopes, or the 401 API Gateway answers."""
        token = bearer_token(authorization)
        if token is None:
            return MISSING_TOKEN
        try:
            claims = self._claims(token)
        except _Invalid as invalid:
            return invalid_token(invalid.description)
        return Authorized(claims, granted_scopes(claims))

    def _claims(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise _Invalid("segments")
        header, claims = _json_object(parts[0]), _json_object(parts[1])
        signature = _base64url(parts[2])
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or not algorithm:
            raise _Invalid("no_alg")
        if algorithm not in RSA_ALGORITHMS:
            raise _Invalid("alg", f"signing method {_printable(algorithm)} is invalid")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _Invalid("no_kid")
        try:
            jwk = self.keys.key(kid)
        except KeysUnavailable:
            raise _Invalid("no_keys") from None
        if jwk is None:
            raise _Invalid("unknown_kid")
        verifier = RSAAlgorithm(RSA_ALGORITHMS[algorithm])
        if jwk.get("kty") != "RSA" or jwk.get("alg", algorithm) != algorithm or jwk.get("use", "sig") != "sig":
            raise _Invalid("key")
        try:
            key = verifier.from_jwk(dict(jwk))
        except Exception:  # PyJWT raises InvalidKeyError, or cryptography's errors for bad numbers
            raise _Invalid("key") from None
        public = key.public_key() if hasattr(key, "public_key") else key
        if not verifier.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), public, signature):
            raise _Invalid("signature")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        configuration = self.configuration
        if claims.get("iss") != configuration.issuer:
            raise _Invalid("issuer")
        # `aud` (a string or a list of them) when the token has one; `client_id` only when it has none.
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        offered = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(item, str) and item in configuration.audiences for item in offered):
            raise _Invalid("audience")
        now = int(self._clock())
        expires, not_before, issued = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
        if expires is None:
            raise _Invalid("no_exp")
        if expires <= now:
            raise _Invalid("expired")
        if not_before is not None and not_before > now:
            raise _Invalid("not_yet")
        if issued is not None and issued > now:
            raise _Invalid("issued_later")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization` header: the value alone, or after `Bearer ` (any case); None for none."""
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _base64url(segment: str) -> bytes:
    """A segment's bytes: base64url without padding (RFC 7515), and nothing else."""
    if not _BASE64URL.fullmatch(segment):
        raise _Invalid("malformed")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _Invalid("malformed") from None


def _json_object(segment: str) -> dict[str, Any]:
    try:
        # JSON has no NaN or Infinity (nor does the parser API Gateway uses), though Python's parser reads them.
        value = json.loads(_base64url(segment), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError):
        raise _Invalid("malformed") from None
    if not isinstance(value, dict):
        raise _Invalid("malformed")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid("malformed")
    return float(value)


def _printable(text: str) -> str:
    """`text` fit to stand between quotes in a header: visible ASCII without quotes or backslashes, at most 40."""
    return "".join(char if char.isascii() and char.isprintable() and char not in '"\\' else "?" for char in text[:40])
