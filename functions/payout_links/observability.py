"""Logger and metrics, configured once; imported by every module that reports something."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
metrics = Metrics()

# A refused request (say, a 401) records no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# A 503 `dependency-unavailable` (or a settler's resend that could not be made for the same reason), by the AWS
# service that failed: `dependency` is its one dimension beside the service, as the dependency-unavailable alarm
# selects it.
DEPENDENCY_UNAVAILABLE_METRIC = "DependencyUnavailable"


def count_dependency_unavailable(dependency: str) -> None:
    """One `DependencyUnavailable`, with `dependency` (dynamodb, secrets-manager) beside the service: printed now, in
    a document of its own, so that the dimension does not reach the invocation's other metrics."""
    with single_metric(name=DEPENDENCY_UNAVAILABLE_METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="dependency", value=str(dependency))


__all__ = ["DEPENDENCY_UNAVAILABLE_METRIC", "MetricUnit", "count_dependency_unavailable", "logger", "metrics"]
