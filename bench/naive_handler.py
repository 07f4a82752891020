"""The careless handler, for comparison: every Powertools utility imported eagerly at module load, the
X-Ray SDK and Tracer included, the resolver's OpenAPI validation on; then the same work as the real handler."""

from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: F401
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities import parameters  # noqa: F401
from aws_lambda_powertools.utilities.batch import BatchProcessor  # noqa: F401
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2  # noqa: F401
from aws_lambda_powertools.utilities.feature_flags import FeatureFlags  # noqa: F401
from aws_lambda_powertools.utilities.idempotency import idempotent_function  # noqa: F401
from aws_lambda_powertools.utilities.parser import parse  # noqa: F401

from payout_links.app import lambda_handler as _real_handler

tracer = Tracer()
resolver = APIGatewayHttpResolver(enable_validation=True)


@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return _real_handler(event, context)
