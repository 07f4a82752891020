"""One measurement per process, started fresh by bench/perf.py; prints one JSON line.

    python bench/probes.py cold-handler | cold-floor | cold-naive | warm

The environment (AWS endpoint, table, secret, upstream URL, POWERTOOLS_*) is set by perf.py. The clock starts
at the top of this file, before any import that the variant pays for: the interpreter's own start-up is the
same for every variant and is left out.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

if os.environ.get("BENCH_SYS_PATH"):
    # What Lambda runs (perf.py lays it out): the function as built, the layer, and the runtime's boto3, in
    # Lambda's order, before the standard library; started with -I -S -B, so nothing else is on the path and no
    # bytecode is written. Otherwise the dev venv, where the project is installed.
    sys.path[:0] = os.environ["BENCH_SYS_PATH"].split(os.pathsep)

BODY = {"amount": 2500, "payee": {"country_code": "1", "phone_number": "5555550123"}, "metadata": {"order": "A-1"}}
# A token the local gateway would pass on; the function reads only the claims API Gateway put in the event.
CLAIMS = {"sub": "bench-user", "scope": "payouts:write"}
# The caller's limits, on, as perf.py gives them to the function: far above what a run creates, so that every
# create reserves and none is refused.
DAILY_AMOUNT_LIMIT_CENTS = int(os.environ.get("CALLER_DAILY_AMOUNT_LIMIT_CENTS", "0"))
HOURLY_LINK_LIMIT = int(os.environ.get("CALLER_HOURLY_LINK_LIMIT", "0"))


# The events are written out here, not built by tests.support.http_event (the tests' one builder): in the shipped
# layout only the function and its layer are importable, and every import this file makes is timed as cold start.


def event(key: str) -> dict:
    body = json.dumps(BODY)
    return {
        "version": "2.0",
        "routeKey": "POST /payout-links",
        "rawPath": "/payout-links",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "idempotency-key": key},
        "requestContext": {
            "authorizer": {"jwt": {"claims": CLAIMS, "scopes": ["payouts:write"]}},
            "http": {"method": "POST", "path": "/payout-links", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": uuid.uuid4().hex,
            "routeKey": "POST /payout-links",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def link_event(method: str, link_id: str) -> dict:
    """GET or DELETE /payout-links/{id}, as API Gateway passes it on: no body, the id in pathParameters."""
    route_key, path = f"{method} /payout-links/{{id}}", f"/payout-links/{link_id}"
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {},
        "pathParameters": {"id": link_id},
        "requestContext": {
            "authorizer": {"jwt": {"claims": CLAIMS, "scopes": ["payouts:write"]}},
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


class Context:
    function_name = "payout-link-proxy-bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:payout-link-proxy-bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def invoke(handler, key: str) -> dict:
    response = handler(event(key), Context())
    assert response["statusCode"] == 201, response
    return response


def invoke_link(handler, method: str, link_id: str, expected: int = 200) -> dict:
    """A read or a cancel of `link_id` that must answer `expected` (a 409 for a claimed link's cancel)."""
    response = handler(link_event(method, link_id), Context())
    assert response["statusCode"] == expected, response
    return json.loads(response["body"])


class Floor:
    """What any proxy must do, and no more: the same clients and the same raw calls, without our code."""

    def __init__(self) -> None:
        import boto3
        import httpx
        import pydantic
        from botocore.config import Config

        class Body(pydantic.BaseModel):  # the validation any proxy does: one small model
            amount: int
            payee: dict
            metadata: dict

        self.model = Body
        config = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "max_attempts": 2})
        session = boto3.session.Session()
        self.dynamodb = session.client("dynamodb", config=config)
        self.secrets = session.client("secretsmanager", config=config)
        self.http = httpx.Client()
        self.table = os.environ["IDEMPOTENCY_TABLE_NAME"]
        self.owners_table = os.environ["LINK_OWNERS_TABLE_NAME"]
        self.url = os.environ["PAYOUT_API_BASE_URL"].rstrip("/") + "/v2/payout-links"
        self.authorization = ""

    def fetch_credentials(self) -> None:
        import base64

        secret = json.loads(self.secrets.get_secret_value(SecretId=os.environ["PAYOUT_API_SECRET_ID"])["SecretString"])
        token = base64.b64encode(f"{secret['client_id']}:{secret['api_key']}".encode()).decode()
        self.authorization = f"Basic {token}"

    # The same DynamoDB requests any correct idempotency layer with per-caller limits makes: one transaction that
    # takes the lock (a conditional put that returns the record holding it) and reserves the create's amount and one
    # link in the caller's day and hour counters, each on condition of staying within its limit; then one that
    # stores the response, with the link's owner written beside it, as any proxy that shows links to their owners
    # must; and the caller's limit overrides, read once per container. The records hold what any proxy that settles
    # unknown outcomes and lists links must store: with the lock, its token, the request to resend and the record's
    # place in a queue of unsettled intents (taken off that queue on completion); with the owner, what a list shows
    # (the link's created, amount, URL and the caller's key), written only for its owner.
    _LOCK_CONDITION = (
        "attribute_not_exists(#id) OR #expiry < :now OR "
        "(#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)"
    )

    def read_overrides(self) -> None:
        self.overrides = self.dynamodb.get_item(
            TableName=self.table, Key={"id": {"S": "limits#overrides"}}, ProjectionExpression="callers"
        ).get("Item")

    def _counter(self, window: str, total: str, added: int, most: int, expires: int) -> dict:
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"id": {"S": f"limits#floor#{window}"}},
                "UpdateExpression": "ADD #total :added SET #expiration = :expiration",
                "ConditionExpression": "attribute_not_exists(#total) OR #total <= :room",
                "ExpressionAttributeNames": {"#total": total, "#expiration": "expiration"},
                "ExpressionAttributeValues": {
                    ":added": {"N": str(added)},
                    ":room": {"N": str(most - added)},
                    ":expiration": {"N": str(expires)},
                },
            }
        }

    def _take_lock(self, key: str, request) -> None:
        now = time.time()
        day, hour = time.strftime("day#%Y-%m-%d", time.gmtime(now)), time.strftime("hour#%Y-%m-%dT%H", time.gmtime(now))
        lock = {
            "TableName": self.table,
            "Item": {
                "id": {"S": f"floor#{key}"},
                "expiration": {"N": str(int(now) + 86400)},
                "status": {"S": "INPROGRESS"},
                "in_progress_expiration": {"N": str(int(now * 1000) + 20_000)},
                "validation": {"S": hashlib.sha256(request.model_dump_json().encode()).hexdigest()},
                "reservation": {"S": json.dumps({"amount": request.amount, "day": day, "hour": hour})},
                "lock_token": {"S": uuid.uuid4().hex},
                "intent": {"S": json.dumps({"caller": "floor", "key": key, "request": request.model_dump()})},
                "settle_queue": {"S": "due"},
                "settle_at": {"N": str(int(now) + 140)},
            },
            "ConditionExpression": self._LOCK_CONDITION,
            "ExpressionAttributeNames": {
                "#id": "id",
                "#expiry": "expiration",
                "#in_progress_expiry": "in_progress_expiration",
                "#status": "status",
            },
            "ExpressionAttributeValues": {
                ":now": {"N": str(int(now))},
                ":now_in_millis": {"N": str(int(now * 1000))},
                ":inprogress": {"S": "INPROGRESS"},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        expires = int(now) + 2 * 86400
        self.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": lock},
                self._counter(day, "amount", request.amount, DAILY_AMOUNT_LIMIT_CENTS, expires),
                self._counter(hour, "links", 1, HOURLY_LINK_LIMIT, expires),
            ]
        )

    def new_intent(self, key: str) -> None:
        request = self.model.model_validate_json(json.dumps(BODY))
        self._take_lock(key, request)
        payload = {**request.model_dump(), "idempotency_key": str(uuid.uuid5(uuid.NAMESPACE_URL, key))}
        link = self.http.post(self.url, json=payload, headers={"Authorization": self.authorization}).json()
        now = time.time()
        complete = {
            "TableName": self.table,
            "Key": {"id": {"S": f"floor#{key}"}},
            "UpdateExpression": "SET #response_data = :response_data, #expiry = :expiry, #status = :status"
            " REMOVE #intent, #queue, #settle_at",
            "ExpressionAttributeNames": {
                "#response_data": "data",
                "#expiry": "expiration",
                "#status": "status",
                "#intent": "intent",
                "#queue": "settle_queue",
                "#settle_at": "settle_at",
            },
            "ExpressionAttributeValues": {
                ":response_data": {"S": json.dumps(link)},
                ":expiry": {"N": str(int(now) + 86400)},
                ":status": {"S": "COMPLETED"},
            },
        }
        owner = {
            "TableName": self.owners_table,
            "Item": {
                "link_id": {"S": link["id"]},
                "owner": {"S": "floor"},
                "expires_at": {"N": str(int(now) + 86400)},
                "created": {"S": link["created"]},
                "amount": {"N": str(link["amount"])},
                "link": {"S": link["link"]},
                "idempotency_key": {"S": key},
            },
            "ConditionExpression": "attribute_not_exists(#link_id) OR #owner = :owner",
            "ExpressionAttributeNames": {"#link_id": "link_id", "#owner": "owner"},
            "ExpressionAttributeValues": {":owner": {"S": "floor"}},
        }
        self.dynamodb.transact_write_items(TransactItems=[{"Update": complete}, {"Put": owner}])

    def replay(self, key: str) -> None:
        from botocore.exceptions import ClientError

        request = self.model.model_validate_json(json.dumps(BODY))
        try:
            self._take_lock(key, request)
        except ClientError as exc:
            json.loads(exc.response["CancellationReasons"][0]["Item"]["data"]["S"])


def cold_handler() -> dict:
    from payout_links.app import lambda_handler

    imported = time.perf_counter()
    invoke(lambda_handler, str(uuid.uuid4()))
    return {"import_ms": (imported - STARTED) * 1000, "total_ms": (time.perf_counter() - STARTED) * 1000}


def cold_naive() -> dict:
    import naive_handler as naive  # beside this file (the venv variant runs it as a script, not isolated)

    imported = time.perf_counter()
    invoke(naive.lambda_handler, str(uuid.uuid4()))
    return {"import_ms": (imported - STARTED) * 1000, "total_ms": (time.perf_counter() - STARTED) * 1000}


def cold_floor() -> dict:
    floor = Floor()
    imported = time.perf_counter()
    floor.fetch_credentials()
    floor.read_overrides()
    floor.new_intent(str(uuid.uuid4()))
    return {"import_ms": (imported - STARTED) * 1000, "total_ms": (time.perf_counter() - STARTED) * 1000}


def cpu_ms(action, keys: list[str]) -> float:
    """CPU time this process spends doing `action` for every key, in ms."""
    started = time.process_time()
    for key in keys:
        action(key)
    return (time.process_time() - started) * 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm() -> dict:
    """Warm CPU per request for the handler and the floor in this one process, round trips, and memory."""
    import httpx

    from payout_links import aws
    from payout_links.app import lambda_handler

    def handler(key: str) -> None:
        invoke(lambda_handler, key)

    for _ in range(10):
        handler(str(uuid.uuid4()))
    rss_10 = peak_rss_mb()
    served = 10

    # Round trips, counted where they happen: botocore's event hooks and the upstream emulator's counters. Every
    # call a client makes counts, whatever its operation (PutItem, GetItem, TransactWriteItems, ...).
    aws_calls: list[tuple[str, str]] = []
    for service in ("dynamodb", "secretsmanager"):
        aws.client(service).meta.events.register(
            "before-call", lambda model, service=service, **_: aws_calls.append((service, model.name))
        )
    # One keep-alive connection for our own questions, opened before the first count is taken.
    control = httpx.Client(base_url=os.environ["PAYOUT_API_BASE_URL"].rsplit("/api", 1)[0])

    def round_trips(action, *, breakdown: bool = False) -> dict:
        aws_calls.clear()
        before = control.get("/_emulator/stats").json()
        action()
        after = control.get("/_emulator/stats").json()
        counts = {
            "dynamodb": sum(service == "dynamodb" for service, _ in aws_calls),
            "secretsmanager": aws_calls.count(("secretsmanager", "GetSecretValue")),
            "upstream": after["requests"] - before["requests"],
            "new_connections": after["connections"] - before["connections"],
        }
        if breakdown:  # which upstream requests: creates (POST), reads (GET), cancels (DELETE)
            counts.update({kind: after[kind] - before[kind] for kind in ("creates", "reads", "cancels")})
            counts["dynamodb_calls"] = [name for service, name in aws_calls if service == "dynamodb"]
        return counts

    def created_link(key: str) -> str:
        return json.loads(invoke(lambda_handler, key)["body"])["id"]

    repeated = str(uuid.uuid4())
    trips = {"new_intent": round_trips(lambda: handler(repeated)), "replay": round_trips(lambda: handler(repeated))}
    # Reads and cancels of links this caller created: a read of the link just made; a cancel of a fresh link (the
    # upstream accepts the DELETE: one call); the same cancel again (the upstream refuses it, so the link is read
    # to decide: two calls); a cancel of a link the payee claimed (refused, read, answered 409: two calls).
    link_id = created_link(repeated)  # a replay: the link the new intent made
    fresh, claimed = created_link(str(uuid.uuid4())), created_link(str(uuid.uuid4()))
    control.post(f"/_emulator/links/{claimed}/status", json={"status": "claimed"}).raise_for_status()
    trips["read"] = round_trips(lambda: invoke_link(lambda_handler, "GET", link_id), breakdown=True)
    trips["cancel"] = round_trips(lambda: invoke_link(lambda_handler, "DELETE", fresh), breakdown=True)
    trips["cancel_again"] = round_trips(lambda: invoke_link(lambda_handler, "DELETE", fresh), breakdown=True)
    trips["cancel_claimed"] = round_trips(
        lambda: invoke_link(lambda_handler, "DELETE", claimed, expected=409), breakdown=True
    )
    assert invoke_link(lambda_handler, "GET", fresh)["status"] == "canceled"
    served += 2 + 3 + 4 + 1  # the two counted creates; three more; four counted reads and cancels; one read

    floor = Floor()
    floor.fetch_credentials()
    floor.read_overrides()
    floor.new_intent(str(uuid.uuid4()))
    # Handler and floor take turns, a chunk at a time, so that whatever else the machine does falls on both; the
    # median over chunks keeps a burst of noise in one chunk from deciding the figure.
    rounds, chunk = int(os.environ.get("BENCH_WARM_ROUNDS", "200")), 20
    cases = ("handler_new", "floor_new", "handler_replay", "floor_replay")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds // chunk):
        keys = [str(uuid.uuid4()) for _ in range(chunk)]
        samples["handler_new"].append(cpu_ms(handler, keys) / chunk)
        samples["floor_new"].append(cpu_ms(floor.new_intent, keys) / chunk)
        samples["handler_replay"].append(cpu_ms(handler, keys) / chunk)
        samples["floor_replay"].append(cpu_ms(floor.replay, keys) / chunk)
    served += 2 * (rounds // chunk * chunk)
    cpu = {f"{name}_ms": statistics.median(values) for name, values in samples.items()}
    for case in ("new", "replay"):
        ratios = [h / f for h, f in zip(samples[f"handler_{case}"], samples[f"floor_{case}"], strict=True)]
        cpu[f"{case}_ratio"] = statistics.median(ratios)

    for _ in range(1000 - served):
        handler(str(uuid.uuid4()))
    return {**cpu, "round_trips": trips, "rss_after_10_mb": rss_10, "rss_after_1000_mb": peak_rss_mb()}


if __name__ == "__main__":
    probes = {"cold-handler": cold_handler, "cold-floor": cold_floor, "cold-naive": cold_naive, "warm": warm}
    result = probes[sys.argv[1]]()
    # The function logs to stdout; the result goes to its own file.
    Path(os.environ["BENCH_RESULT_FILE"]).write_text(json.dumps(result))
