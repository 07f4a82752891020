"""Start and stop everything the proxy needs on this machine, honouring the local stack's names:
PORT, AWS_ENDPOINT_URL, PAYOUT_API_BASE_URL, PAYOUT_API_CLIENT_ID, PAYOUT_API_KEY, PARTNER_WEBHOOK_SECRETS,
PAYOUT_API_TIMEOUT_SECONDS, LAMBDA_TIMEOUT_SECONDS (and LOCAL_CONCURRENCY, the number of environments,
CORS_ALLOWED_ORIGINS, the browser origins the gateway allows instead of the template's default,
LOCAL_INTEGRATION_TIMEOUT_SECONDS, API Gateway's 30 s unless a test needs it shorter, LOCAL_SCHEDULE_SECONDS, the
scheduled functions' period instead of the template's rates, LOCAL_CONTROL_PORT, the control API's port), and
JWT_ISSUER, JWT_AUDIENCE (the template's JwtIssuer and JwtAudience) and LOCAL_ISSUER_PORT: without JWT_ISSUER, the
stack starts a local issuer of its own (local_stack/issuer.py) on that port and trusts it.

This is the project's wiring of the generic core (`local_stack.core`): which function of `template.yaml` serves the
API, its scheduled functions (every function with schedule events), the local names of their tables and secrets and
what they hold, the Dots emulator as their default upstream, and the variables above."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.core.api import LocalApi
from local_stack.core.aws_resources import clients, ensure_secret, ensure_table, start_moto_server
from local_stack.core.control import LocalControl
from local_stack.core.gateway import INTEGRATION_TIMEOUT_SECONDS
from local_stack.core.schedules import LocalSchedules, ScheduledRun
from local_stack.core.workers import STOP_GRACE_SECONDS, ChildProcesses
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator
from local_stack.issuer import DEFAULT_LOCAL_ISSUER_PORT, LocalIssuer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
# The function the local API runs, by its logical id in the template; its handler is the template's.
FUNCTION = "PayoutLinksFunction"
# Its name locally (AWS_LAMBDA_FUNCTION_NAME, and the Lambda context's function name).
FUNCTION_NAME = "payout-link-proxy-local"
# Every function's name locally; one the template adds later is named after its logical id.
LOCAL_FUNCTION_NAMES = {FUNCTION: FUNCTION_NAME, "SettlerFunction": "payout-link-proxy-local-settler"}
REGION = "us-east-1"
# Local names of the resources the template creates in AWS.
TABLE_NAME = "payout-link-proxy-local-idempotency"
OWNERS_TABLE_NAME = "payout-link-proxy-local-link-owners"
CREDENTIALS_SECRET_NAME = "payout-link-proxy/local/dots-credentials"
PARTNER_SECRETS_NAME = "payout-link-proxy/local/partner-webhook-secrets"
# The template's resources, by logical id, as the local stack names them.
LOCAL_NAMES = {
    "IdempotencyTable": TABLE_NAME,
    "LinkOwnersTable": OWNERS_TABLE_NAME,
    "PayoutApiCredentialsSecret": CREDENTIALS_SECRET_NAME,
    "PartnerWebhookSecretsSecret": PARTNER_SECRETS_NAME,
}
# The audience locally (JWT_AUDIENCE replaces it).
DEFAULT_AUDIENCE = "payout-link-proxy"
# The template wants an https issuer; locally a loopback http one is allowed too.
_LOCAL_ISSUER_URL = re.compile(r"https://\S+|http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?(/\S*)?")
# Obviously fake, for the local stack only: base64 of "demo-partner-secret-not-real!!".
DEMO_PARTNER_SECRETS = {"demo-partner": ["whsec_ZGVtby1wYXJ0bmVyLXNlY3JldC1ub3QtcmVhbCEh"]}


@dataclass
class StackConfig:
    port: int = 3000
    aws_endpoint_url: str | None = None
    payout_api_base_url: str | None = None
    client_id: str = DEMO_CLIENT_ID
    api_key: str = DEMO_API_KEY
    credentials_given: bool = False
    partner_secrets: dict[str, list[str]] = field(default_factory=lambda: dict(DEMO_PARTNER_SECRETS))
    partner_secrets_given: bool = False
    function_overrides: dict[str, str] = field(default_factory=dict)
    lambda_timeout_seconds: float | None = None
    concurrency: int = 4
    cors_allowed_origins: list[str] | None = None  # None: the template's default
    integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS
    schedule_seconds: float | None = None  # None: the template's rates; 0: scheduled functions run only when asked
    control_port: int = 0  # 0: any free port
    jwt_issuer: str | None = None  # None: a local issuer, started with the stack
    jwt_audiences: list[str] = field(default_factory=lambda: [DEFAULT_AUDIENCE])
    local_issuer_port: int = DEFAULT_LOCAL_ISSUER_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackConfig:
        config = cls(
            port=int(env.get("PORT", "3000")),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            payout_api_base_url=env.get("PAYOUT_API_BASE_URL") or None,
            concurrency=int(env.get("LOCAL_CONCURRENCY", "4")),
            integration_timeout_seconds=float(
                env.get("LOCAL_INTEGRATION_TIMEOUT_SECONDS", str(INTEGRATION_TIMEOUT_SECONDS))
            ),
        )
        if env.get("CORS_ALLOWED_ORIGINS"):
            config.cors_allowed_origins = [origin.strip() for origin in env["CORS_ALLOWED_ORIGINS"].split(",")]
        if "PAYOUT_API_CLIENT_ID" in env or "PAYOUT_API_KEY" in env:
            config.client_id = env.get("PAYOUT_API_CLIENT_ID", DEMO_CLIENT_ID)
            config.api_key = env.get("PAYOUT_API_KEY", DEMO_API_KEY)
            config.credentials_given = True
        if env.get("PARTNER_WEBHOOK_SECRETS"):
            config.partner_secrets = parse_partner_secrets(env["PARTNER_WEBHOOK_SECRETS"])
            config.partner_secrets_given = True
        if env.get("LAMBDA_TIMEOUT_SECONDS"):
            config.lambda_timeout_seconds = float(env["LAMBDA_TIMEOUT_SECONDS"])
        if env.get("LOCAL_SCHEDULE_SECONDS"):
            config.schedule_seconds = parse_period(env["LOCAL_SCHEDULE_SECONDS"])
        if env.get("LOCAL_CONTROL_PORT"):
            config.control_port = int(env["LOCAL_CONTROL_PORT"])
        if env.get("JWT_ISSUER"):
            config.jwt_issuer = parse_issuer(env["JWT_ISSUER"])
        if env.get("JWT_AUDIENCE"):
            config.jwt_audiences = parse_audiences(env["JWT_AUDIENCE"])
        if env.get("LOCAL_ISSUER_PORT"):
            config.local_issuer_port = int(env["LOCAL_ISSUER_PORT"])
        return config


def parse_issuer(text: str) -> str:
    """JWT_ISSUER: an https URL, as the template's JwtIssuer, or locally an http one on 127.0.0.1 or localhost."""
    if not _LOCAL_ISSUER_URL.fullmatch(text):
        raise ValueError(
            f"JWT_ISSUER must be an https URL, or http://127.0.0.1[:port] or http://localhost[:port], not {text!r}"
        )
    return text


def parse_audiences(text: str) -> list[str]:
    """JWT_AUDIENCE: audiences separated by commas, as the template's JwtAudience."""
    audiences = [audience.strip() for audience in text.split(",") if audience.strip()]
    if not audiences:
        raise ValueError(f"JWT_AUDIENCE must name at least one audience, not {text!r}")
    return audiences


def parse_period(text: str) -> float:
    """LOCAL_SCHEDULE_SECONDS: a number of seconds, or 0 (no timers: scheduled functions run only when asked)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(
            f"LOCAL_SCHEDULE_SECONDS must be a number of seconds, or 0 (runs only on demand), not {text!r}"
        )
    return seconds


def parse_partner_secrets(text: str) -> dict[str, list[str]]:
    """`{"partner": "whsec_..."}` or `{"partner": ["whsec_new", "whsec_old"]}`: one or more secrets each."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("PARTNER_WEBHOOK_SECRETS must be a JSON object of partner name to secret(s)")
    partners = {}
    for partner, secrets in value.items():
        secrets = [secrets] if isinstance(secrets, str) else secrets
        if not secrets or not all(isinstance(s, str) and s.startswith("whsec_") for s in secrets):
            raise ValueError(f"PARTNER_WEBHOOK_SECRETS[{partner!r}] must be a whsec_ secret or a list of them")
        partners[partner] = secrets
    return partners


def local_function_name(function: str) -> str:
    """A function's name locally (AWS_LAMBDA_FUNCTION_NAME, and the Lambda context's function name)."""
    return LOCAL_FUNCTION_NAMES.get(function, f"{FUNCTION_NAME}-{function}")


def local_variables(declared: Mapping[str, str], environ: Mapping[str, str], upstream_url: str) -> dict[str, str]:
    """A function's variables locally, by one rule for every function the stack runs: the template's values (with
    the local names of the resources), the local stack's values for the variables the function declares (the API
    docs served, the upstream this stack uses), and a declared variable set in `environ` (our environment) over
    them. A variable the function does not declare is never added (its process inherits our environment, though,
    whatever it declares, as every function's does)."""
    variables = dict(declared)
    if "API_DOCS_ENABLED" in variables:  # locally the docs are served (in AWS the EnableApiDocs parameter decides)
        variables["API_DOCS_ENABLED"] = "true"
    variables.update({name: environ[name] for name in variables if name in environ})
    if "PAYOUT_API_BASE_URL" in variables:  # PAYOUT_API_BASE_URL, when set, chose this upstream
        variables["PAYOUT_API_BASE_URL"] = upstream_url
    return variables


class ScheduledRunFailed(Exception):
    """A scheduled function's run failed: the handler raised, its process crashed or it overran its timeout."""

    def __init__(self, run: ScheduledRun) -> None:
        super().__init__(f"{run.function} {run.outcome}: {run.error}")
        self.run = run


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._moto: Any = None
        self._emulator: DotsEmulator | None = None
        self._api: LocalApi | None = None
        self._schedules: LocalSchedules | None = None
        self._control: LocalControl | None = None
        self.function_timeout_seconds = 0.0  # the API function's, once started
        self._issuer: LocalIssuer | None = None
        # Every process the stack starts (the API's execution environments, the scheduled functions'), whoever
        # starts it: what stop() ends, and after which nothing starts.
        self._processes = ChildProcesses()
        self.endpoint_url = ""
        self.payout_api_base_url = ""
        self.jwt_issuer = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        config = self.config
        if config.aws_endpoint_url:
            self.endpoint_url = config.aws_endpoint_url
        else:
            self._moto, self.endpoint_url = start_moto_server()
        aws_env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", REGION),
            "AWS_REGION": os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", REGION)),
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local-not-a-key"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local-not-a-secret"),
        }
        os.environ.update(aws_env)  # this process's boto3 clients, and the moto server, use the same

        if config.jwt_issuer:
            self.jwt_issuer = config.jwt_issuer
        else:
            try:
                self._issuer = LocalIssuer(audience=config.jwt_audiences[0], port=config.local_issuer_port).start()
            except OSError as exc:
                raise ValueError(
                    f"the local issuer cannot listen on 127.0.0.1:{config.local_issuer_port} ({exc.strerror}): "
                    "set LOCAL_ISSUER_PORT, or JWT_ISSUER to an issuer of your own"
                ) from None
            self.jwt_issuer = self._issuer.url

        if config.payout_api_base_url:
            self.payout_api_base_url = config.payout_api_base_url
        else:
            self._emulator = DotsEmulator(config.client_id, config.api_key).start()
            self.payout_api_base_url = self._emulator.base_url

        # Every function's variables, changed here before it starts, by one rule (local_variables).
        api = LocalApi(TEMPLATE_PATH, FUNCTION, physical_names=LOCAL_NAMES)
        api.environment.update(local_variables(api.environment, os.environ, self.payout_api_base_url))
        if config.lambda_timeout_seconds is not None:
            # LAMBDA_TIMEOUT_SECONDS stands for the template's FunctionTimeoutSeconds, which sets both the function's
            # Timeout and the FUNCTION_TIMEOUT_SECONDS its time budget follows.
            api.environment["FUNCTION_TIMEOUT_SECONDS"] = f"{config.lambda_timeout_seconds:g}"
        self.function_timeout_seconds = config.lambda_timeout_seconds or api.timeout_seconds
        schedules = LocalSchedules(TEMPLATE_PATH, physical_names=LOCAL_NAMES)
        for scheduled in schedules.functions.values():
            scheduled.environment.update(local_variables(scheduled.environment, os.environ, self.payout_api_base_url))
        function_env = api.environment

        dynamodb, secrets = clients(self.endpoint_url, aws_env["AWS_DEFAULT_REGION"])
        ensure_table(dynamodb, api.template, "IdempotencyTable", function_env["IDEMPOTENCY_TABLE_NAME"])
        ensure_table(dynamodb, api.template, "LinkOwnersTable", function_env["LINK_OWNERS_TABLE_NAME"])
        ensure_secret(
            secrets,
            function_env["PAYOUT_API_SECRET_ID"],
            {"client_id": config.client_id, "api_key": config.api_key},
            overwrite=config.credentials_given,
        )
        ensure_secret(
            secrets,
            function_env["PARTNER_WEBHOOK_SECRETS_ID"],
            config.partner_secrets,
            overwrite=config.partner_secrets_given,
        )

        # The AWS variables are in our environment (above), which every execution environment starts from. The
        # scheduled functions' environments start with their first run; the API's port is bound last, once its
        # environments are ready.
        self._schedules = schedules.start(
            period_seconds=config.schedule_seconds,
            function_names={name: local_function_name(name) for name in schedules.functions},
            processes=self._processes,
        )
        self._control = LocalControl(schedules, config.control_port).start()
        self._api = api.start(
            port=config.port,
            concurrency=config.concurrency,
            function_name=local_function_name(FUNCTION),
            timeout_seconds=config.lambda_timeout_seconds,
            cors_allowed_origins=config.cors_allowed_origins,
            jwt_issuer=self.jwt_issuer,
            jwt_audiences=config.jwt_audiences,
            integration_timeout=config.integration_timeout_seconds,
            processes=self._processes,
        )
        self.config.port = api.port

    def run_scheduled(self, function: str, *, event: str | None = None) -> Any:
        """Run the scheduled function `function` (a logical id) now, after any run under way, and return what its
        handler returned; `ScheduledRunFailed` when the run failed."""
        if self._schedules is None:
            raise RuntimeError("the local stack is not running")
        run = self._schedules.run_now(function, event=event)
        if run.outcome != "succeeded":
            raise ScheduledRunFailed(run)
        return run.result

    @property
    def schedules(self) -> dict[str, Any]:
        """The scheduled functions, their events and periods (`LocalSchedules.describe`)."""
        return self._schedules.describe() if self._schedules else {}

    @property
    def control_url(self) -> str:
        """The control API (`local_stack.core.control`): scheduled runs on demand."""
        return self._control.url if self._control else ""

    @property
    def worker_pids(self) -> list[int]:
        return self._api.pids if self._api else []

    def stop(self) -> None:
        """Stop everything, whatever the functions are doing, in about STOP_GRACE_SECONDS and a second more: from the
        first step on no process starts (not even a replacement for one killed meanwhile); the control API and the
        API's port stop taking requests; every execution environment ends, the API's and the scheduled functions'
        together: idle ones at once, busy ones once their event is done or the grace is over (killed then); the
        emulator and moto last, since a function finishing its event may need them until then."""
        self._processes.close()
        if self._control:
            self._control.stop()
            self._control = None
        _together(
            *(
                component.stop
                for component in (self._schedules, self._api)  # each its timers or its port first, then its processes
                if component is not None
            )
        )
        self._schedules = self._api = None
        self._processes.stop(grace=0)  # anything a component did not end: killed now
        _together(*(server.stop for server in (self._emulator, self._moto, self._issuer) if server is not None))
        self._emulator = self._moto = None
        self._issuer = None

    @property
    def local_issuer(self) -> LocalIssuer | None:
        """The issuer the stack started, None when JWT_ISSUER names another."""
        return self._issuer

    def kill_processes(self) -> None:
        """Kill every process the stack started, at once: for a stop that overran."""
        self._processes.kill()


def _together(*steps: Callable[[], object]) -> None:
    """Run `steps` at the same time, each in a thread, and return once all are over, or after twice the grace and a
    second more (what overruns is left to `kill_processes` and the process's end)."""
    threads = [threading.Thread(target=step, name="local-stack-stop", daemon=True) for step in steps]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * STOP_GRACE_SECONDS + 1
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
