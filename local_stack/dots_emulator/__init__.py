"""An embedded emulator of the Dots payout-link API, on a loopback port.

The local stack uses it as the default upstream, and the tests use it as a real HTTP upstream
whose answers can be delayed, trickled a byte at a time, altered, replaced or dropped on demand
(see `DotsEmulator.inject`).
It only ever binds a loopback address: it accepts any request from anyone who can reach it.

The payout-link API (Basic auth, answers shaped by `set_shape`):
- `POST /api/v2/payout-links` creates a link (or replays the one made under the same idempotency key);
- `GET /api/v2/payout-links/{id}` retrieves a link;
- `DELETE /api/v2/payout-links/{id}` cancels a link whose status allows it. How a refusal looks (400 or 409,
  and its text) is the emulator's choice: the real API does not document it, so no client should rely on it.
Every such request counts in `stats()` and takes the next queued fault, whatever its method.

The control API, under `/_emulator/` (no auth):
- `GET stats`, `POST reset`, `POST faults`, `DELETE faults`, `POST shape`, `POST credentials`;
- `POST links` makes a link outside the proxy (`seed_link`; not a payout-link API request);
- `GET links` lists every stored link, oldest first, with its status and the idempotency key it was created under
  (`links`);
- `GET links/{id}` shows a stored link (`link`);
- `POST links/{id}/status` with `{"status": ...}` moves a link to any contract status (`set_status`), the way
  the payee, Dots or time would.

Its modules, one job each: `api` (routes, checks, links and answers' shapes), `faults` (what a fault is),
`emulator` (`DotsEmulator`: the state, and start and stop), `control` (the control API), `server` (HTTP).
Run it alone with `python -m local_stack.dots_emulator --port 8090`.
"""

from local_stack.dots_emulator.api import LINK_STATUSES, PAYOUT_LINKS_PATH, SHAPES
from local_stack.dots_emulator.control import CONTROL_PREFIX
from local_stack.dots_emulator.emulator import DEFAULT_SEED_PAYLOAD, DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_SEED_PAYLOAD",
    "DEMO_API_KEY",
    "DEMO_CLIENT_ID",
    "LINK_STATUSES",
    "PAYOUT_LINKS_PATH",
    "SHAPES",
    "DotsEmulator",
]
