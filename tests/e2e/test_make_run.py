"""What `make run` promises: it starts everything itself, answers only once ready, honours the local stack's
names, keeps idempotency records across restarts on a given AWS endpoint, runs the template's scheduled functions,
and stops all it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import httpx
import pytest

from local_stack.core.aws_resources import free_port
from local_stack.issuer import TOKEN_PATH, LocalIssuer
from local_stack.stack import CREDENTIALS_SECRET_NAME, PARTNER_SECRETS_NAME, ROOT, TABLE_NAME
from tests.conftest import stack_env, start_stack, without_aws_endpoint
from tests.support import RunningStack, new_key, payout_body, token, wait_until

pytestmark = pytest.mark.e2e


def auth(bearer: str | None = None) -> dict[str, str]:
    """JSON with a bearer token: `bearer`, or one of the session issuer, which every stack here trusts."""
    return {"authorization": f"Bearer {bearer or token('make-run-user')}", "content-type": "application/json"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_stack_serves_and_stops_everything_it_started(tmp_path):
    running = start_stack(tmp_path, LOCAL_CONCURRENCY="2", LOCAL_SCHEDULE_SECONDS="")  # "": as if unset
    port = int(running.url.rsplit(":", 1)[1])
    try:
        assert "AWS endpoint: http://127.0.0.1:" in running.banner  # the embedded moto server
        assert "upstream: http://127.0.0.1:" in running.banner  # the embedded emulator
        # The settler at its template's rate: nothing sets LOCAL_SCHEDULE_SECONDS here.
        assert "scheduled: SettlerFunction EveryMinute every 60 s (template: rate(1 minute))" in running.banner
        response = httpx.post(
            f"{running.url}/payout-links", json=payout_body(), headers={**auth(), "idempotency-key": new_key()}
        )
        assert response.status_code == 201, response.text
        assert response.json()["link"].startswith("https://")
        workers = running.worker_pids
        assert len(workers) == 2
    finally:
        exit_code = running.stop()

    assert exit_code == 0
    assert not any(pid_alive(pid) for pid in workers)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_the_port_answers_only_once_every_dependency_is_ready(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        env={**stack_env(PORT=str(port), LOCAL_CONCURRENCY="1", LOCAL_SCHEDULE_SECONDS="")},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stack.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                first = httpx.post(
                    f"http://127.0.0.1:{port}/payout-links",
                    json=payout_body(),
                    headers={**auth(), "idempotency-key": new_key()},
                    timeout=30,
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        else:
            pytest.fail("the local stack never listened")
        # The very first connection that succeeds is served by a ready function, moto and emulator.
        assert first.status_code == 201, first.text
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


def test_restart_keeps_idempotency_records_on_a_given_endpoint(tmp_path, aws_endpoint, aws_resources, dots):
    env = {"AWS_ENDPOINT_URL": aws_endpoint, "PAYOUT_API_BASE_URL": dots.base_url, "LOCAL_CONCURRENCY": "1"}
    key = new_key()
    answers = []
    for _ in range(2):  # the same request to a stack, then to a new stack on the same endpoint
        running = start_stack(tmp_path, **env)
        try:
            answers.append(
                httpx.post(
                    f"{running.url}/payout-links", json=payout_body(), headers={**auth(), "idempotency-key": key}
                )
            )
        finally:
            running.stop()
    created, replayed = answers

    assert created.status_code == 201
    assert replayed.status_code == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]


@pytest.fixture
def separate_moto_endpoint():
    """A moto server in its own process: in-process moto servers share one backend, and this test must not
    touch the session's secrets."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_credentials_and_partner_secrets_are_written_to_the_given_endpoint(tmp_path, separate_moto_endpoint):
    endpoint = separate_moto_endpoint
    partners = {"acme": ["whsec_YWNtZS1uZXctc2VjcmV0LW5vdC1yZWFs", "whsec_YWNtZS1vbGQtc2VjcmV0LW5vdC1yZWFs"]}
    running = start_stack(
        tmp_path,
        AWS_ENDPOINT_URL=endpoint,
        LOCAL_CONCURRENCY="1",
        PAYOUT_API_CLIENT_ID="custom-client",
        PAYOUT_API_KEY="custom-key-not-a-secret",
        PARTNER_WEBHOOK_SECRETS=json.dumps(partners),
    )
    try:
        # The embedded emulator accepts exactly the credentials the stack was given.
        response = httpx.post(
            f"{running.url}/payout-links", json=payout_body(), headers={**auth(), "idempotency-key": new_key()}
        )
    finally:
        running.stop()
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
    credentials = json.loads(secrets.get_secret_value(SecretId=CREDENTIALS_SECRET_NAME)["SecretString"])
    stored_partners = json.loads(secrets.get_secret_value(SecretId=PARTNER_SECRETS_NAME)["SecretString"])

    assert response.status_code == 201, response.text
    assert credentials == {"client_id": "custom-client", "api_key": "custom-key-not-a-secret"}
    assert stored_partners == partners


def test_cors_allowed_origins_replace_the_templates_default(tmp_path):
    running = start_stack(
        tmp_path, LOCAL_CONCURRENCY="1", CORS_ALLOWED_ORIGINS="https://app.example.test, https://admin.example.test"
    )
    try:
        answers = {
            origin: httpx.options(
                f"{running.url}/payout-links",
                headers={"origin": origin, "access-control-request-method": "POST"},
            )
            for origin in ("https://app.example.test", "https://admin.example.test", "http://localhost:5173")
        }
    finally:
        running.stop()

    allowed = {origin: answer.headers.get("access-control-allow-origin") for origin, answer in answers.items()}
    assert allowed == {
        "https://app.example.test": "https://app.example.test",
        "https://admin.example.test": "https://admin.example.test",
        "http://localhost:5173": None,  # the template's default no longer applies
    }


def test_malformed_partner_secrets_are_refused_at_start():
    result = subprocess.run(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **without_aws_endpoint(os.environ),
            "PORT": str(free_port()),
            "PARTNER_WEBHOOK_SECRETS": '{"acme": "not-a-whsec"}',
        },
    )

    assert result.returncode == 2
    assert "PARTNER_WEBHOOK_SECRETS" in result.stderr


# --- the JWT issuer -----------------------------------------------------------------------------------------------


def create(running: RunningStack, bearer: str) -> httpx.Response:
    return httpx.post(
        f"{running.url}/payout-links", json=payout_body(), headers={**auth(bearer), "idempotency-key": new_key()}
    )


def test_any_openid_issuer_given_as_jwt_issuer_works_unchanged(tmp_path):
    """`JWT_ISSUER=... JWT_AUDIENCE=a,b make run` with an issuer of the team's own (here a second issuer, its keys
    published under a path of its own): its tokens for either audience pass; the session issuer's, a token for
    another audience, and one the issuer's key never signed do not."""
    with LocalIssuer(audience="web-app", jwks_path="/oauth2/v1/keys") as team_issuer:
        running = start_stack(
            tmp_path, LOCAL_CONCURRENCY="1", JWT_ISSUER=team_issuer.url, JWT_AUDIENCE="web-app, mobile-app"
        )
        try:
            web = create(running, team_issuer.mint({"sub": "ada", "scope": "payouts:write"}))
            mobile = create(running, team_issuer.mint({"sub": "ada", "scope": "payouts:write", "aud": "mobile-app"}))
            default_audience = create(
                running, team_issuer.mint({"sub": "ada", "scope": "payouts:write", "aud": "payout-link-proxy"})
            )
            other_issuer = create(running, token("ada"))
        finally:
            running.stop()
        published, team_url = team_issuer.requests, team_issuer.url

    assert f"JWT issuer: {team_url} (JWT_ISSUER), audience web-app, mobile-app" in running.banner
    assert (web.status_code, mobile.status_code) == (201, 201), (web.text, mobile.text)
    assert default_audience.status_code == other_issuer.status_code == 401
    assert default_audience.headers["www-authenticate"].endswith('"the token does not have a valid audience"')
    assert other_issuer.headers["www-authenticate"].endswith('"the token\'s kid is not a key of the issuer"')
    assert published["/.well-known/openid-configuration"] >= 1 and published["/oauth2/v1/keys"] >= 1


def test_without_jwt_issuer_make_run_starts_its_own_and_make_token_mints_from_it(tmp_path):
    """The README's quick start: `make run`, then `make token SUB=...`, then a request with it."""
    issuer_port = free_port()
    running = start_stack(tmp_path, LOCAL_CONCURRENCY="1", JWT_ISSUER="", LOCAL_ISSUER_PORT=str(issuer_port))
    minted = {}
    try:
        for name, arguments in {"user": ["SUB=demo-user"], "reader": ["SUB=demo-user", "SCOPE=payouts:read"]}.items():
            made = subprocess.run(
                ["make", "-s", "token", *arguments],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "LOCAL_ISSUER_PORT": str(issuer_port)},
            )
            assert made.returncode == 0, made.stderr
            minted[name] = made.stdout.strip()
        created = create(running, minted["user"])
        read_only = create(running, minted["reader"])
        listed = httpx.get(f"{running.url}/payout-links", headers=auth(minted["reader"]))
        sessions = create(running, token("demo-user"))  # the tests' issuer is not this stack's
        discovery = httpx.get(f"http://127.0.0.1:{issuer_port}/.well-known/openid-configuration").json()
    finally:
        running.stop()

    assert f"JWT issuer: http://127.0.0.1:{issuer_port} (local;" in running.banner
    assert "audience payout-link-proxy" in running.banner
    assert minted["user"].count(".") == 2 and "\n" not in minted["user"]
    assert created.status_code == 201, created.text
    assert read_only.status_code == 403 and listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]
    assert sessions.status_code == 401
    assert discovery["issuer"] == f"http://127.0.0.1:{issuer_port}"
    with pytest.raises(httpx.ConnectError):  # stopped with the stack
        httpx.post(f"http://127.0.0.1:{issuer_port}{TOKEN_PATH}", json={"sub": "x"}, timeout=5)


def test_make_token_without_a_running_issuer_says_so():
    made = subprocess.run(
        ["make", "-s", "token", "SUB=ada"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOCAL_ISSUER_PORT": str(free_port())},
    )

    assert made.returncode != 0 and made.stdout == ""
    assert "no local issuer" in made.stderr


def test_a_local_issuer_port_in_use_stops_make_run_with_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "local_stack"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=stack_env(PORT=str(free_port()), JWT_ISSUER="", LOCAL_ISSUER_PORT=str(taken.getsockname()[1])),
        )

    assert result.returncode == 2
    assert "LOCAL_ISSUER_PORT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("issuer", ["http://issuer.example.test", "ftp://127.0.0.1", "127.0.0.1:3100"])
def test_a_jwt_issuer_that_is_neither_https_nor_loopback_http_is_refused_at_start(issuer):
    result = subprocess.run(
        [sys.executable, "-m", "local_stack"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=stack_env(PORT=str(free_port()), JWT_ISSUER=issuer),
    )

    assert result.returncode == 2
    assert "JWT_ISSUER" in result.stderr


def scheduled_runs(running: RunningStack, function: str) -> list[dict]:
    """The runs of `function` the stack has logged so far, one JSON line each."""
    lines = running.log_path.read_text(encoding="utf-8").splitlines()
    runs = [json.loads(line) for line in lines if line.startswith('{"local_schedule"')]
    return [run for run in runs if run["local_schedule"] == function]


def timer_runs(running: RunningStack) -> list[dict]:
    """The settler's runs that its timer started and that succeeded."""
    runs = scheduled_runs(running, "SettlerFunction")
    return [run for run in runs if run["trigger"] == "timer" and run["outcome"] == "succeeded"]


def banner_value(running: RunningStack, label: str) -> str:
    line = next(line for line in running.banner.splitlines() if line.strip().startswith(f"{label}:"))
    return line.split(": ", 1)[1].split()[0]


def test_the_settler_runs_every_local_schedule_seconds_and_on_demand(tmp_path):
    running = start_stack(tmp_path, LOCAL_CONCURRENCY="1", LOCAL_SCHEDULE_SECONDS="0.5")
    try:
        assert "scheduled: SettlerFunction EveryMinute every 0.5 s (template: rate(1 minute))" in running.banner
        # At the template's one minute, no run would come before the wait is over.
        wait_until(lambda: len(timer_runs(running)) >= 2, timeout=20)
        result = running.run_schedule("SettlerFunction")
    finally:
        running.stop()

    runs = scheduled_runs(running, "SettlerFunction")
    assert isinstance(result, dict)
    assert {run["outcome"] for run in runs} <= {"succeeded", "skipped"}
    assert len(timer_runs(running)) >= 2
    assert [run["trigger"] for run in runs if run["trigger"] == "manual"] == ["manual"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's environment from /proc")
def test_the_settler_gets_the_stacks_endpoints_and_the_overrides_from_make_runs_environment(tmp_path):
    """`SETTLE_AFTER_SECONDS=45 make run`: the settler's own execution environment has it, with the endpoints and the
    local names the API's function gets, and no variable the API function alone is given locally."""
    running = start_stack(tmp_path, LOCAL_CONCURRENCY="1", LOCAL_SCHEDULE_SECONDS="0", SETTLE_AFTER_SECONDS="45")
    try:
        running.run_schedule("SettlerFunction")  # its environment starts, and stays warm
        settler = running.schedules()["SettlerFunction"]["pid"]
        raw = Path(f"/proc/{settler}/environ").read_bytes()
        api_raw = Path(f"/proc/{running.worker_pids[0]}/environ").read_bytes()
    finally:
        running.stop()
    env = dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)
    api_env = dict(entry.split("=", 1) for entry in api_raw.decode().split("\0") if "=" in entry)

    assert env["SETTLE_AFTER_SECONDS"] == "45"  # the template says 120
    assert env["PAYOUT_API_BASE_URL"] == api_env["PAYOUT_API_BASE_URL"] == banner_value(running, "upstream")
    assert env["AWS_ENDPOINT_URL"] == api_env["AWS_ENDPOINT_URL"] == banner_value(running, "AWS endpoint")
    assert env["IDEMPOTENCY_TABLE_NAME"] == api_env["IDEMPOTENCY_TABLE_NAME"] == TABLE_NAME
    assert env["PAYOUT_API_SECRET_ID"] == api_env["PAYOUT_API_SECRET_ID"] == CREDENTIALS_SECRET_NAME
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "payout-link-proxy-local-settler"
    assert env["PAYOUT_API_MAX_ATTEMPTS"] == "1"  # its own value, not the API function's 3
    if "API_DOCS_ENABLED" not in os.environ:
        assert api_env["API_DOCS_ENABLED"] == "true" and "API_DOCS_ENABLED" not in env


def test_sigterm_stops_everything_within_5_s_while_a_scheduled_run_is_under_way(tmp_path):
    running = start_stack(tmp_path, LOCAL_CONCURRENCY="2", LOCAL_SCHEDULE_SECONDS="0")
    settler = 0
    try:
        running.run_schedule("SettlerFunction")  # its environment starts, and stays warm
        settler = running.schedules()["SettlerFunction"]["pid"]
        os.kill(settler, signal.SIGSTOP)  # the next run hangs, as a handler stuck in a call would

        def hanging_run() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the stack goes away under it
                httpx.post(f"{running.control_url}/schedules/SettlerFunction/run", timeout=60)

        threading.Thread(target=hanging_run, daemon=True).start()
        wait_until(lambda: running.schedules()["SettlerFunction"]["running"], timeout=10)
        began = time.monotonic()
        exit_code = running.stop()
        took = time.monotonic() - began
    finally:
        if settler and pid_alive(settler):
            os.kill(settler, signal.SIGKILL)
        running.stop()

    assert exit_code == 0
    assert took < 5, took
    assert not pid_alive(settler)
    assert not any(pid_alive(pid) for pid in running.worker_pids)
