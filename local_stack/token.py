"""`make token`: print a token from the local issuer of a running `make run` (one started without JWT_ISSUER).

    python -m local_stack.token --sub ada --scope payouts:write [--aud A] [--client-id C] [--ttl SECONDS]

It asks the issuer on 127.0.0.1:$LOCAL_ISSUER_PORT (3100 unless set, as for `make run`) for a token (`POST
/token`) and prints it alone on a line, for `TOKEN=$(make -s token SUB=ada)`.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from local_stack.issuer import DEFAULT_LOCAL_ISSUER_PORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make token", description="A token from make run's local issuer.")
    parser.add_argument("--sub", help="the subject (the caller); none: a machine token, with --client-id")
    parser.add_argument("--scope", default="payouts:write", help="space-separated scopes (default: payouts:write)")
    parser.add_argument("--aud", help="the audience (default: the first of make run's JWT_AUDIENCE)")
    parser.add_argument("--client-id", help="the client_id claim")
    parser.add_argument("--ttl", type=int, help="seconds until it expires (default: 3600)")
    args = parser.parse_args(argv)
    asked = {
        name: value
        for name, value in (
            ("sub", args.sub),
            ("scope", args.scope),
            ("aud", args.aud),
            ("client_id", args.client_id),
            ("ttl", args.ttl),
        )
        if value not in (None, "")
    }
    port = os.environ.get("LOCAL_ISSUER_PORT") or str(DEFAULT_LOCAL_ISSUER_PORT)
    url = f"http://127.0.0.1:{port}/token"
    try:
        answer = httpx.post(url, json=asked, timeout=10)
    except httpx.TransportError:
        print(
            f"make token: no local issuer at {url}: start `make run` without JWT_ISSUER first "
            "(with the same LOCAL_ISSUER_PORT)",
            file=sys.stderr,
        )
        return 1
    if answer.status_code != 200:
        print(f"make token: the issuer answered {answer.status_code}: {answer.text}", file=sys.stderr)
        return 1
    print(answer.json()["access_token"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
