"""A small OpenID issuer on 127.0.0.1, for the local stack and the tests: the tokens its gateway accepts.

It publishes what API Gateway's JWT authorizer reads of an issuer, and mints tokens:

- `GET /.well-known/openid-configuration`: the discovery document, whose `issuer` is its URL
  (`http://127.0.0.1:PORT`) and whose `jwks_uri` names its key set;
- `GET {jwks_path}` (`/.well-known/jwks.json` unless given): its one public key, RSA, `kid` its RFC 7638
  thumbprint;
- `POST /token`, from loopback only, addressed to the issuer by its loopback name, as JSON and from no web page
  (no `Origin`): a token, signed RS256, for `{"sub", "scope", "aud", "client_id", "ttl",
  "claims"}` (each optional: `aud` defaults to the issuer's audience, `ttl` to an hour, `claims` adds any), answered
  as `{"access_token", "token_type": "Bearer", "expires_in"}`. This is how `make token` gets one.

The RSA key is made when the issuer is created and lives in its memory only: nothing is written anywhere, and a
restarted issuer has a new key (tokens from before are refused, as from any unknown key). In this process, `mint`
signs a token with any claims (`omit` drops a default claim), and `requests` counts what was asked of it per path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

# Where `make run` starts it without JWT_ISSUER (LOCAL_ISSUER_PORT), and where `make token` asks.
DEFAULT_LOCAL_ISSUER_PORT = 3100
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/token"
DEFAULT_TTL_SECONDS = 3600
MAX_BODY_BYTES = 64 * 1024


class LocalIssuer:
    def __init__(self, *, audience: str, port: int = 0, jwks_path: str = JWKS_PATH, algorithm: str = "RS256") -> None:
        """An issuer (not yet listening: `start()`) whose tokens name `audience` unless told otherwise, on
        127.0.0.1:`port` (0: any free port), publishing its key set at `jwks_path`."""
        self.audience = audience
        self.jwks_path = jwks_path
        self.algorithm = algorithm
        self.requests: Counter[str] = Counter()
        self._port = port
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self._private_key.public_key()))
        self.kid = _thumbprint(public)
        self._public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": algorithm}
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the issuer is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The issuer's URL: its `iss`, and what JWT_ISSUER names."""
        return f"http://127.0.0.1:{self.port}"

    def jwks(self) -> dict[str, Any]:
        """The key set it publishes."""
        return {"keys": [dict(self._public_jwk)]}

    def discovery(self) -> dict[str, Any]:
        """Its OpenID discovery document (what API Gateway reads of it: `issuer`, `jwks_uri`)."""
        return {
            "issuer": self.url,
            "jwks_uri": self.url + self.jwks_path,
            "token_endpoint": self.url + TOKEN_PATH,
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
        }

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        omit: Iterable[str] = (),
    ) -> str:
        """A token signed with the issuer's key and `kid`: `iss` (its URL), `aud` (its audience), `iat` (now) and
        `exp` (now + `ttl_seconds`), then `claims` over them (any JSON value; None is `null`), less `omit`."""
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.url, "aud": self.audience, "iat": now, "exp": now + int(ttl_seconds)}
        payload.update(claims or {})
        for name in omit:
            payload.pop(name, None)
        # Signed as a JWS of the payload's JSON, whatever the claims hold (PyJWT's `encode` would refuse, say, an
        # `iss` that is not a string: a token the gateway must be shown to refuse).
        body = json.dumps(payload, separators=(",", ":")).encode()
        return jwt.api_jws.encode(body, self._private_key, algorithm=self.algorithm, headers={"kid": self.kid})

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _IssuerServer(self._port, self)
        # Polled often, so that stopping it takes no time (tests start one per test).
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="local-issuer", daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint of an RSA public key (SHA-256, base64url)."""
    canonical = json.dumps({name: jwk[name] for name in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class _IssuerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _IssuerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        issuer = self.server.issuer
        path = self.path.split("?", 1)[0]
        issuer.requests[path] += 1
        if path == DISCOVERY_PATH:
            self._json(200, issuer.discovery())
        elif path == issuer.jwks_path:
            self._json(200, issuer.jwks())
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        issuer = self.server.issuer
        path = self.path.split("?", 1)[0]
        issuer.requests[path] += 1
        if path != TOKEN_PATH:
            self._json(404, {"error": "not_found"})
            return
        if not ip_address(self.client_address[0]).is_loopback:
            self._json(403, {"error": "access_denied", "error_description": "tokens are minted for loopback only"})
            return
        # A browser page is loopback too, once it has rebound its own name to 127.0.0.1: it then reads the answer as
        # same-origin. Only a request addressed to this issuer by its loopback name, sent by no page (no Origin) and
        # as JSON (which a page cannot send without a preflight), gets a token.
        own_hosts = {f"127.0.0.1:{issuer.port}", f"localhost:{issuer.port}"}
        if (
            self.headers.get("host", "").lower() not in own_hosts
            or "origin" in self.headers
            or self.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json"
        ):
            self._json(403, {"error": "access_denied", "error_description": "tokens are minted for make token only"})
            return
        try:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                raise ValueError("body too large")
            asked = json.loads(self.rfile.read(length) or b"{}")
            claims, ttl = _requested_claims(asked)
        except (ValueError, TypeError) as exc:
            self._json(400, {"error": "invalid_request", "error_description": str(exc)})
            return
        token = issuer.mint(claims, ttl_seconds=ttl)
        self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl})

    def _json(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "no-store")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _requested_claims(asked: Any) -> tuple[dict[str, Any], int]:
    """The claims and lifetime a `POST /token` asks for."""
    if not isinstance(asked, dict):
        raise ValueError("send a JSON object")
    unknown = set(asked) - {"sub", "scope", "aud", "client_id", "ttl", "claims"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    ttl = asked.get("ttl", DEFAULT_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    extra = asked.get("claims", {})
    if not isinstance(extra, dict):
        raise ValueError("claims must be a JSON object")
    claims = {**extra, **{name: asked[name] for name in ("sub", "scope", "aud", "client_id") if name in asked}}
    return claims, ttl
