"""The settler: the scheduled function that settles every intent whose outcome its caller left unknown.

Once a minute (template.yaml, `SettlerFunction`) it resends the intents that are due, through the same lock and
under the same derived key as their callers' own retries (`PayoutLinkService.settle_due`), and reports what it
did as metrics: the alarms on stranded intents and on the oldest due intent's age read them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payout_links.observability import (
    MetricUnit,
    count_dependency_unavailable,
    leave_out_context_keys,
    logger,
    metrics,
)
from payout_links.problems import Dependency
from payout_links.service import get_service
from payout_links.settings import get_settings
from payout_links.store import StoreUnavailable


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The run's id on each of its lines, as a request's API Gateway id is on the API function's; and what the
    # upstream gets as `X-Request-Id` with each resend.
    logger.set_correlation_id(context.aws_request_id)
    leave_out_context_keys()
    settings = get_settings()
    try:
        report = get_service().settle_due(
            remaining_seconds=context.get_remaining_time_in_millis() / 1000,
            max_resends=settings.settle_max_resends_per_run,
            concurrency=settings.settle_concurrency,
            settle_after_seconds=settings.settle_after_seconds,
        )
    except StoreUnavailable as failed:
        # The due intents (or the stranded ones) could not be counted: nothing was resent. One ERROR with the
        # store's error code (never the SDK's text), where the settler-errors runbook looks; counted as a resend
        # DynamoDB kept the settler from making; and the run still fails, for the settler-errors alarm.
        logger.error("idempotency store failed", extra={"store_error": failed.code})
        count_dependency_unavailable(Dependency.DYNAMODB)
        raise
    for name, value in (
        ("IntentsDue", report.due),
        ("IntentsResent", report.resent),
        ("IntentsSettled", report.settled),
        ("IntentsReleased", report.released),
        ("IntentsStillUnknown", report.unknown),
        ("StrandedIntents", report.stranded),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="OldestDueIntentAge", unit=MetricUnit.Seconds, value=report.oldest_due_seconds)
    summary = asdict(report)
    logger.info("settler run", extra={"settler": summary})
    return summary
