"""Lambda SnapStart hooks (used where the stack enables SnapStart; harmless elsewhere).

With SnapStart, Lambda runs the function's initialization once when a version is published, snapshots the
environment, and starts new environments from copies of that snapshot. So:

- `before_snapshot` does the work every cold start would repeat: the imports (done by then), the settings, the
  boto3 clients and the HTTP client, and one validation of a sample request (pydantic's first-call work). No
  secret is read and no connection to a dependency is opened (building a boto3 client resolves the function's
  AWS credentials, which `after_restore` replaces).
- `after_restore` drops what must never be shared between environments restored from one snapshot: open
  connections, cached secrets, the AWS credentials the clients resolved when they were built (each environment
  resolves its own again), and the state of `random` (the retry jitter), which is reseeded from the OS.

The hooks are registered through `snapshot_restore_py`, which the Lambda Python runtime provides; without it
(outside Lambda) nothing is registered and the function works as before.
"""

from __future__ import annotations

import random
from typing import Any

from payout_links import aws, bounded_transport
from payout_links.models import parse_create_request
from payout_links.service import get_partner_secrets, get_service
from payout_links.settings import get_settings

# A valid request under any allowed MAX_AMOUNT_CENTS (1 cent), validated once before the snapshot; never sent.
_SAMPLE_REQUEST = b'{"amount": 1, "payee": {"country_code": "1", "phone_number": "5555550100"}}'


def before_snapshot() -> None:
    settings = get_settings()
    get_service()
    if settings.partner_webhook_secrets_id is not None:
        get_partner_secrets()
    parse_create_request(_SAMPLE_REQUEST, max_amount_cents=settings.max_amount_cents)


def after_restore() -> None:
    random.seed()  # from os.urandom: each restored environment its own jitter
    service = get_service()
    bounded_transport.drop_connections(service.payout_api.http)
    service.payout_api.credentials.forget()
    if get_settings().partner_webhook_secrets_id is not None:
        get_partner_secrets().forget()
    credentials = aws.renewed_credentials()
    for name in aws.CLIENTS_IN_USE:
        client = aws.client(name)
        _drop_aws_connections(client)
        client._request_signer._credentials = credentials  # what the client signs its next call with


def _drop_aws_connections(client: Any) -> None:
    # botocore keeps one urllib3 pool manager per client; closing it empties the pools, and the client opens new
    # connections on its next call.
    client._endpoint.http_session.close()


def register() -> bool:
    """Register the hooks with the runtime's library; False where it is absent (outside Lambda)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True
