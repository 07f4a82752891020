"""The Lambda handler: routes, and the one place where errors become `application/problem+json`.

Frontends create links (POST /payout-links), list theirs (GET /payout-links) and read or cancel their own (GET and
DELETE /payout-links/{id}); partners create them through signed webhooks."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from payout_links import api_docs, inbound, snapstart, webhooks
from payout_links.models import parse_create_request, parse_list_query, parse_partner_event
from payout_links.observability import (
    MetricUnit,
    count_dependency_unavailable,
    leave_out_context_keys,
    loggable,
    loggable_caller,
    logger,
    metrics,
)
from payout_links.outcomes import CreateFailed
from payout_links.owners import LINK_ID
from payout_links.problems import DependencyUnavailable, NotFound, Problem
from payout_links.router import Request, Response, RouteHandler, Router
from payout_links.service import get_partner_secrets, get_service
from payout_links.settings import get_settings
from payout_links.store import Created

snapstart.register()  # no-op outside Lambda; see snapstart.py

# Validation is done by the models in `parse_create_request`, so that unreadable JSON (400) and invalid fields
# (422) stay distinct.
_NO_SUCH_ROUTE = "No such route."


def post_payout_link(request: Request) -> Response:
    """A frontend's create: its key is the Idempotency-Key header or the body's idempotency_key."""
    caller = _frontend_caller(request)
    settings = get_settings()
    body = inbound.json_body(request, max_bytes=settings.max_body_bytes)
    payout_request = parse_create_request(body, max_amount_cents=settings.max_amount_cents)
    logger.append_keys(amount=payout_request.amount)
    key = inbound.frontend_key(request.headers.get("idempotency-key"), payout_request.idempotency_key)
    created = get_service().create_once(caller, key, payout_request, context=request.lambda_context)
    return _created_answer(created)


def list_payout_links(request: Request) -> Response:
    """A page of the links the caller created, newest first, from the owner records alone (the upstream is not
    asked); `cursor` is the `next_cursor` of the page before."""
    caller = _frontend_caller(request)
    query = parse_list_query(request.query)
    items, next_cursor = get_service().list_payout_links(caller, limit=query.limit, cursor=query.cursor)
    logger.info("payout links listed", extra={"listed": len(items), "last_page": next_cursor is None})
    metrics.add_metric(name="PayoutLinksListed", unit=MetricUnit.Count, value=1)
    return Response(
        200,
        json.dumps({"items": items, "next_cursor": next_cursor}, separators=(",", ":"), sort_keys=True),
        # A list changes with every create: never cached, by a browser or anything in between.
        headers={"Cache-Control": "no-store"},
    )


def read_payout_link(request: Request) -> Response:
    caller = _frontend_caller(request)
    link_id = request.path_parameters["id"]
    link = get_service().read_payout_link(caller, link_id, remaining_millis=request.remaining_millis())
    return _lifecycle_answer(link, "read", metric="PayoutLinkRead")


def cancel_payout_link(request: Request) -> Response:
    caller = _frontend_caller(request)
    link_id = request.path_parameters["id"]
    link = get_service().cancel_payout_link(caller, link_id, remaining_millis=request.remaining_millis())
    return _lifecycle_answer(link, "canceled", metric="PayoutLinkCanceled")


def _lifecycle_answer(link: dict[str, Any], done: str, *, metric: str) -> Response:
    """The owner's 200 for a read or a cancel: one log line and one count, as a create has."""
    logger.info(f"payout link {done}", extra={"link_id": loggable(link["id"]), "link_status": link["status"]})
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return _link_response(200, link)


def _frontend_caller(request: Request) -> str:
    caller = inbound.frontend_caller(request)
    logger.append_keys(caller=loggable_caller(caller))
    return caller


def receive_partner_event(request: Request) -> Response:
    """A partner's create: a signed event whose `data` is a create's body; its key is the event's webhook-id."""
    partner = request.path_parameters["partner"]
    # The name a request claims, until the signature proves it (the outcome says whether it did).
    caller = f"partner:{partner}"
    logger.append_keys(caller=loggable_caller(caller))  # whoever sends the request chooses the name: bounded
    settings = get_settings()
    delivery = webhooks.verified_delivery(request, partner, get_partner_secrets(), max_bytes=settings.max_body_bytes)
    logger.append_keys(webhook_id=loggable(delivery.webhook_id))
    payout_request = parse_partner_event(delivery.body, max_amount_cents=settings.max_amount_cents).data
    logger.append_keys(amount=payout_request.amount)
    key = inbound.webhook_key(delivery.webhook_id, payout_request.idempotency_key)
    created = get_service().create_once(caller, key, payout_request, context=request.lambda_context)
    return _created_answer(created)


def openapi_document(request: Request) -> Response:
    _require_api_docs()
    return Response(200, api_docs.openapi_document(), "application/json")


def docs_page(request: Request) -> Response:
    _require_api_docs()
    return Response(200, api_docs.PAGE, "text/html; charset=utf-8")


def _require_api_docs() -> None:
    # The routes exist in every deployment (SAM routes cannot depend on a parameter): unless enabled, they answer
    # exactly like a route that does not exist.
    if not get_settings().api_docs_enabled:
        raise NotFound(_NO_SUCH_ROUTE)


def _created_answer(created: Created) -> Response:
    """The 201 of either create, first or replayed: one log line and one count."""
    link_id = created.link["id"]
    if not LINK_ID.fullmatch(link_id):
        # Created, and answered as such; but no URL can name it, so its owner will not be able to read it.
        logger.warning("the upstream's link id cannot be read or canceled", extra={"link_id": loggable(link_id)})
    outcome = "replayed" if created.replayed else "created"
    logger.info("payout link " + outcome, extra={"link_id": loggable(link_id), "outcome": outcome})
    metrics.add_metric(
        name="IdempotentReplay" if created.replayed else "PayoutLinkCreated", unit=MetricUnit.Count, value=1
    )
    return _link_response(201, created.link, {"Idempotent-Replayed": "true"} if created.replayed else {})


def _link_response(status: int, link: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status,
        # Sorted keys: a replay, read back from the store, is byte-for-byte the body of the first answer.
        json.dumps(link, separators=(",", ":"), sort_keys=True),
        # A link's status changes as the payee acts: never cached, by a browser or anything in between.
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


# The routes, keyed as template.yaml declares them: API Gateway names the route it matched in the event's `routeKey`
# and passes the path's values in `pathParameters` (router.py). A unit test holds these keys equal to the
# template's routes of the function, so that every route has a handler and every handler a route.
ROUTES: dict[str, RouteHandler] = {
    "POST /payout-links": post_payout_link,
    "GET /payout-links": list_payout_links,
    "GET /payout-links/{id}": read_payout_link,
    "DELETE /payout-links/{id}": cancel_payout_link,
    "POST /webhooks/{partner}/payout-links": receive_partner_event,
    "GET /openapi.json": openapi_document,
    "GET /docs": docs_page,
}
app = Router(ROUTES)


@app.error_handler(Problem)
def _problem(problem: Problem, request: Request) -> Response:
    if problem.metric:
        metrics.add_metric(name=problem.metric, unit=MetricUnit.Count, value=1)
    if isinstance(problem, DependencyUnavailable):
        count_dependency_unavailable(problem.dependency or "unknown")
    # One failure, one ERROR: a refusal is expected (INFO); a 5xx whose cause was logged where it happened (a
    # dependency's failure, a mismatched link, a bug: `unexpected error`) is a WARNING here; any other 5xx (the
    # upstream failed or timed out, after its attempts' WARNINGs) is the ERROR.
    log = logger.info if problem.status < 500 else logger.warning if problem.logged_at_source else logger.error
    log("request refused", extra={"outcome": problem.slug, "status": problem.status})
    return Response(
        problem.status,
        json.dumps(problem.to_dict(request.request_id), separators=(",", ":")),
        "application/problem+json",
        # An answer about one moment (a lock, a rate limit, a link's state) is never to be reused from a cache.
        headers={"Cache-Control": "no-store", **problem.headers()},
    )


@app.error_handler(CreateFailed)
def _create_failed(failure: CreateFailed, request: Request) -> Response:
    # Whether a link may exist at the upstream: what an operator reconciles by (see outcomes.py).
    logger.append_keys(create_outcome=failure.outcome)
    return _problem(failure.problem, request)


@app.not_found
def _not_found(request: Request) -> Response:
    return _problem(NotFound(_NO_SUCH_ROUTE), request)


@app.error_handler(Exception)
def _unexpected(_: Exception, request: Request) -> Response:
    # A bug, and only a bug: the one message the runbook's bug query looks for (with its stack trace).
    logger.exception("unexpected error")
    problem = Problem("The request could not be completed; retry with the same key.")
    problem.logged_at_source = True
    return _problem(problem, request)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.thread_safe_clear_keys()  # what the service added about the last invocation's intent (clear_state keeps it)
    leave_out_context_keys()
    logger.append_keys(caller="anonymous")  # until a route knows better
    return app.resolve(event, context)
