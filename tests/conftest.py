"""Shared test fixtures: real components only.

- `aws_endpoint`: a moto server on loopback, reached over HTTP by the real boto3 clients.
- `upstream`: the Dots emulator, a real HTTP server, reset before each test.
- `function`: the handler in this process as a fresh (cold) Lambda container, invoked with payload 2.0 events.
- `stack`: `python -m local_stack` (what `make run` starts) in its own process, driven over HTTP.
- `issuer`: the session's OpenID issuer (`tests.support.session_issuer`), whose tokens every stack here trusts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Never let a test reach a real AWS account, whatever the machine's configuration says.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing-not-a-key",
        "AWS_SECRET_ACCESS_KEY": "testing-not-a-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)


def _parse_data_files_once() -> None:
    """Every test's function is a new container, which builds a new boto3 session and clients and a new httpx
    client. What those parse from files that never change (botocore's service models and endpoint data, the CA
    bundle) is parsed once per test session instead of once per container: about 150 ms of CPU a container, which
    was most of the fast loop's time. Each container still makes its own session, credentials, clients and
    connections; only the parsed data and the default TLS context (the CA bundle, loaded) are shared."""
    import functools

    import botocore.session
    import httpx

    botocore.session.create_loader = functools.cache(botocore.session.create_loader)  # type: ignore[attr-defined]
    default_tls = functools.cache(httpx.create_ssl_context)
    create_tls = httpx.create_ssl_context

    def create_ssl_context(*args: object, **kwargs: object) -> object:
        return default_tls() if not args and not kwargs else create_tls(*args, **kwargs)  # type: ignore[arg-type]

    httpx.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_parse_data_files_once()

from local_stack.core.aws_resources import (  # noqa: E402
    clients,
    ensure_secret,
    ensure_table,
    free_port,
    start_moto_server,
)
from local_stack.core.template import function_settings, load_template  # noqa: E402
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator  # noqa: E402
from local_stack.issuer import LocalIssuer  # noqa: E402
from local_stack.spawn import StackDidNotStart, spawn_stack, without_aws_endpoint  # noqa: E402
from local_stack.stack import (  # noqa: E402
    CREDENTIALS_SECRET_NAME,
    FUNCTION,
    LOCAL_NAMES,
    OWNERS_TABLE_NAME,
    PARTNER_SECRETS_NAME,
    TABLE_NAME,
    TEMPLATE_PATH,
)
from tests.support import TEST_PARTNERS, InProcessFunction, RunningStack, session_issuer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# The tiers: each test carries exactly one, so that `make check` (unit, integration) and `make test` (all of them)
# between them run every test, and a test without a tier cannot slip out of both.
TIERS = ("unit", "integration", "faults", "properties", "e2e", "infra", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid} must carry exactly one tier marker of {TIERS}, not {tiers}")


@pytest.fixture(scope="session", autouse=True)
def issuer() -> Iterator[LocalIssuer]:
    """The session's issuer, stopped when the session ends (`token()` starts it on first use, even at import)."""
    running = session_issuer()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    server, url = start_moto_server()
    os.environ["AWS_ENDPOINT_URL"] = url
    yield url
    server.stop()


@pytest.fixture(scope="session")
def aws_clients(aws_endpoint: str):
    return clients(aws_endpoint, "us-east-1")


@pytest.fixture(scope="session")
def aws_resources(aws_clients) -> dict[str, str]:
    dynamodb, secrets = aws_clients
    template = load_template(TEMPLATE_PATH)
    ensure_table(dynamodb, template, "IdempotencyTable", TABLE_NAME)
    ensure_table(dynamodb, template, "LinkOwnersTable", OWNERS_TABLE_NAME)
    ensure_secret(
        secrets, CREDENTIALS_SECRET_NAME, {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY}, overwrite=True
    )
    ensure_secret(secrets, PARTNER_SECRETS_NAME, TEST_PARTNERS, overwrite=True)
    return {
        "table": TABLE_NAME,
        "owners_table": OWNERS_TABLE_NAME,
        "credentials_secret": CREDENTIALS_SECRET_NAME,
        "partner_secrets": PARTNER_SECRETS_NAME,
    }


@pytest.fixture(scope="session")
def dots() -> Iterator[DotsEmulator]:
    with DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY) as emulator:
        yield emulator


@pytest.fixture
def upstream(dots: DotsEmulator) -> Iterator[DotsEmulator]:
    dots.reset()
    yield dots
    # A request the proxy gave up on (a timeout) may still be running in the emulator: let it finish here,
    # not in the next test.
    assert dots.wait_idle(), "the emulator is still busy with a request"


LIMITS_OFF = {"CALLER_DAILY_AMOUNT_LIMIT_CENTS": "0", "CALLER_HOURLY_LINK_LIMIT": "0"}


def function_env(upstream_url: str) -> dict[str, str]:
    """The function's environment exactly as the template declares it, with the local resource names."""
    settings = function_settings(load_template(TEMPLATE_PATH), FUNCTION, LOCAL_NAMES)
    return {
        **settings.environment,
        "PAYOUT_API_BASE_URL": upstream_url,
        # The callers' limits are off unless a test sets them: the session's tests make many links per caller.
        **LIMITS_OFF,
        # What Lambda sets, and the Lambda context reads (LocalLambdaContext.from_environment).
        "AWS_LAMBDA_FUNCTION_NAME": "payout-link-proxy-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
    }


# Powertools reads its settings when the function's modules are first imported, which may be while tests are
# collected: the whole session runs with the template's POWERTOOLS_* values, as the function does in AWS.
os.environ.update({name: value for name, value in function_env("").items() if name.startswith("POWERTOOLS_")})


@pytest.fixture
def function(aws_resources, upstream: DotsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessFunction]:
    """A cold container: settings, clients and caches are built anew on its first request."""
    for name, value in function_env(upstream.base_url).items():
        monkeypatch.setenv(name, value)
    function = InProcessFunction(monkeypatch)
    function.reset_container()
    yield function
    function.reset_container()


@pytest.fixture
def intent_table(aws_clients, aws_resources) -> Iterator[str]:
    """A new, empty idempotency table of this test's own, deleted after it."""
    dynamodb, _ = aws_clients
    name = f"{TABLE_NAME}-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, load_template(TEMPLATE_PATH), "IdempotencyTable", name)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def own_intent_table(intent_table: str, function: InProcessFunction) -> str:
    """`intent_table`, for this test's function (and its settler): the settler's queue then holds this test's
    intents alone, not those other tests left unknown in the session's table."""
    function.set_env(IDEMPOTENCY_TABLE_NAME=intent_table)
    return intent_table


@pytest.fixture
def new_store(aws_clients, intent_table: str) -> Callable[..., Any]:
    """A store as one container has it, over `intent_table`: `new_store(client)` through another DynamoDB client
    (the session's by default), with the callers' limits on (a lock reserves, a release gives back in one
    transaction: `limits=True`) or off (single-item writes)."""
    # Imported here, not at the top: the function's modules must first be imported with the function's environment
    # set (Powertools' Metrics takes its namespace from it when observability.py makes it, at import).
    from payout_links.limits import CallerLimits
    from payout_links.owners import LinkOwners
    from payout_links.store import IntentStore

    dynamodb, _ = aws_clients

    def make(client: Any = None, *, limits: bool = False) -> IntentStore:
        client = dynamodb if client is None else client
        return IntentStore(
            client=client,
            table_name=intent_table,
            owners=LinkOwners(dynamodb_client=client, table_name=OWNERS_TABLE_NAME, retention_seconds=86_400),
            limits=CallerLimits(
                dynamodb_client=client,
                table_name=intent_table,
                daily_amount_cents=1_000_000 if limits else 0,
                hourly_links=1_000 if limits else 0,
            ),
            ttl_seconds=86_400,
            settle_after_seconds=60,
        )

    return make


@pytest.fixture(scope="session")
def stack(aws_resources, aws_endpoint: str, dots: DotsEmulator, tmp_path_factory) -> Iterator[RunningStack]:
    """The local stack against the session's moto server and emulator, with short timeouts so that the
    timeout cases finish quickly: 1 s per upstream attempt, 12 s per invocation (which leaves a cold container
    the time to read its credentials before the upstream deadline: the worst case of an AWS call)."""
    running = start_stack(
        tmp_path_factory.mktemp("stack"),
        AWS_ENDPOINT_URL=aws_endpoint,
        PAYOUT_API_BASE_URL=dots.base_url,
        PAYOUT_API_TIMEOUT_SECONDS="1",
        LAMBDA_TIMEOUT_SECONDS="12",
    )
    yield running
    running.stop()


def stack_env(**env: str) -> dict[str, str]:
    """The environment `start_stack` gives a stack: ours without the session's moto endpoint, limits off, the
    settler run only when a test asks (RunningStack.run_schedule), the session issuer trusted; `env` over it."""
    return {
        **without_aws_endpoint(os.environ),
        "LOCAL_CONCURRENCY": "4",
        **LIMITS_OFF,
        "LOCAL_SCHEDULE_SECONDS": "0",
        "JWT_ISSUER": session_issuer().url,
        **env,
    }


def start_stack(log_dir: Path, **env: str) -> RunningStack:
    """`python -m local_stack` in its own process (with `stack_env(**env)`); returns once it says it listens."""
    port = free_port()
    log_path = log_dir / f"stack-{port}.log"
    try:
        spawned = spawn_stack(stack_env(**env), port=port, log_path=log_path)
    except StackDidNotStart as exc:
        raise AssertionError(f"the local stack did not start:\n{exc.banner}\n{log_path.read_text()[-3000:]}") from None
    return RunningStack(spawned.process, spawned.url, log_path, spawned.banner)
