"""Lambda SnapStart hooks (used where the stack enables SnapStart; harmless elsewhere).

With SnapStart, Lambda runs the function's initialization once when a version is published, snapshots the
environment, and starts new environments from copies of that snapshot. So:

- `before_snapshot` does the work every cold start would repeat, and nothing that must stay unique: the imports
  (done by then), the settings, the boto3 clients and the HTTP client (no connection is opened), and one
  validation of a sample request (pydantic's first-call work). No secret is read and no connection opened.
- `after_restore` drops what must never be shared between environments restored from one snapshot: open
  connections, cached secrets, and the state of `random` (the retry jitter), which is reseeded from the OS.

The hooks are registered through `snapshot_restore_py`, which the Lambda Python runtime provides; without it
(outside Lambda) nothing is registered and the function works as before.
"""

from __future__ import annotations

import random
from typing import Any

from payout_links import aws, deadlines
from payout_links.models import parse_create_request
from payout_links.service import get_partner_secrets, get_service
from payout_links.settings import get_settings

# A valid request, validated once before the snapshot; never sent anywhere.
_SAMPLE_REQUEST = b'{"amount": 100, "payee": {"country_code": "1", "phone_number": "5555550100"}}'


def before_snapshot() -> None:
    settings = get_settings()
    get_service()
    if settings.partner_webhook_secrets_id is not None:
        get_partner_secrets()
    parse_create_request(_SAMPLE_REQUEST, max_amount_cents=settings.max_amount_cents)


def after_restore() -> None:
    random.seed()  # from os.urandom: each restored environment its own jitter
    service = get_service()
    deadlines.drop_connections(service.payout_api.http)
    service.payout_api.credentials.forget()
    if get_settings().partner_webhook_secrets_id is not None:
        get_partner_secrets().forget()
    for name in aws.CLIENTS_IN_USE:
        _drop_aws_connections(aws.client(name))


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
