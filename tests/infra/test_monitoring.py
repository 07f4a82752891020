"""The alarms and the dashboard of template.yaml: they watch the metrics the function really emits (names and
units as tests/integration/test_observability.py observes them), under the namespace and service it emits them with,
and every alarm reaches the alarm topic."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from local_stack.core.template import load_template, resolve
from local_stack.stack import TEMPLATE_PATH
from payout_links import upstream
from payout_links.observability import DEPENDENCY_UNAVAILABLE_METRIC
from payout_links.problems import Dependency, Limit
from tests.support import FUNCTION_METRICS

pytestmark = pytest.mark.infra

# In the order the dashboard's alarm widget lists them.
ALARMS = {
    "ApiServerErrorsAlarm": {("AWS/ApiGateway", "5xx")},
    "UpstreamCredentialsRejectedAlarm": {
        ("PayoutLinkProxy", "UpstreamErrorCredentialsRejected"),
        ("PayoutLinkProxy", "CredentialsRefreshed"),
    },
    "UpstreamRateLimitedAlarm": {("PayoutLinkProxy", "UpstreamErrorRateLimited")},
    "DependencyUnavailableAlarm": {("PayoutLinkProxy", "DependencyUnavailable")},
    "UpstreamErrorsAlarm": {
        ("PayoutLinkProxy", f"UpstreamError{outcome}") for outcome in ("5xx", "Timeout", "Connection", "Unreadable")
    },
    "UpstreamMismatchAlarm": {("PayoutLinkProxy", "UpstreamMismatch")},
    "FunctionErrorsAlarm": {("AWS/Lambda", "Errors")},
    "FunctionThrottlesAlarm": {("AWS/Lambda", "Throttles")},
    "TableThrottlesAlarm": {("AWS/DynamoDB", "ReadThrottleEvents"), ("AWS/DynamoDB", "WriteThrottleEvents")},
    "WebhookRefusalsAlarm": {("PayoutLinkProxy", "WebhookRefused")},
    "PartnerSecretSharedAlarm": {("PayoutLinkProxy", "PartnerSecretShared")},
    "PartnerSecretUnusableAlarm": {("PayoutLinkProxy", "PartnerSecretUnusable")},
    "LimitRefusalsAlarm": {("PayoutLinkProxy", "LimitExceeded")},
    "StrandedIntentsAlarm": {("PayoutLinkProxy", "StrandedIntents")},
    "OldestDueIntentAlarm": {("PayoutLinkProxy", "OldestDueIntentAge")},
    "MismatchedLinkNotCanceledAlarm": {("PayoutLinkProxy", "MismatchedLinkNotCanceled")},
    "UpstreamLinkConflictAlarm": {("PayoutLinkProxy", "UpstreamLinkConflict")},
    "SettlerErrorsAlarm": {("AWS/Lambda", "Errors")},
    "SettlerNotRunningAlarm": {("PayoutLinkProxy", "IntentsDue")},
}
# Alarms about the settler's runs: their AWS/Lambda metrics are the settler's, not the API function's.
SETTLER_ALARMS = {"SettlerErrorsAlarm", "SettlerNotRunningAlarm"}
# The one alarm that fires on missing data: a settler that stopped reporting.
BREACHING_WHEN_MISSING = {"SettlerNotRunningAlarm"}
# Function metrics with a dimension of their own beside the service, and the values it takes (limits.py).
EXTRA_DIMENSIONS = {
    "LimitExceeded": ("limit", {limit.value for limit in Limit}),
    "DependencyUnavailable": ("dependency", {dependency.value for dependency in Dependency}),
}
# The incidents that page at any traffic: a handful of events (a Sum) in 5 minutes against a threshold parameter,
# never a share of the requests. Each alarm's parameter, and the metrics it adds up (or, for rejected credentials,
# subtracts the cured ones from).
INCIDENT_ALARMS = {
    "ApiServerErrorsAlarm": "ApiServerErrorsAlarmThreshold",
    "UpstreamCredentialsRejectedAlarm": "UpstreamCredentialsRejectedAlarmThreshold",
    "UpstreamRateLimitedAlarm": "UpstreamRateLimitedAlarmThreshold",
    "DependencyUnavailableAlarm": "DependencyUnavailableAlarmThreshold",
}
# What an operator looks for on the dashboard (docs/operations.md).
DASHBOARD_METRICS = {
    ("PayoutLinkProxy", name)
    for name in (
        "PayoutLinkCreated",
        "IdempotentReplay",
        "IdempotencyConflict",
        "ValidationRejected",
        "UpstreamErrorCredentialsRejected",
        "UpstreamErrorRateLimited",
        "UpstreamErrorRequestRefused",
        "DependencyUnavailable",
        "UpstreamError5xx",
        "UpstreamErrorTimeout",
        "UpstreamErrorConnection",
        "UpstreamErrorUnreadable",
        "UpstreamMismatch",
        "UpstreamLatency",
        "CredentialsRefreshed",
        "PayoutLinkRead",
        "PayoutLinkCanceled",
        "LinkOwnershipRefused",
        "WebhookRefused",
        "LimitExceeded",
        "ColdStart",
        "IntentsDue",
        "IntentsResent",
        "IntentsSettled",
        "IntentsReleased",
        "IntentsStillUnknown",
        "StrandedIntents",
        "OldestDueIntentAge",
        "MismatchedLinkCanceled",
        "MismatchedLinkNotCanceled",
        "UpstreamLinkConflict",
    )
} | {
    ("AWS/ApiGateway", "Count"),
    ("AWS/ApiGateway", "4xx"),
    ("AWS/ApiGateway", "5xx"),
    ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Invocations"),  # the settler's runs, by its own function name
    ("AWS/Lambda", "Throttles"),
    ("AWS/Lambda", "Duration"),
    ("AWS/Lambda", "ConcurrentExecutions"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def powertools(template: dict[str, Any]) -> dict[str, str]:
    """The namespace and service the function emits its metrics with, as its environment says."""
    variables = resolve(template["Globals"]["Function"]["Environment"]["Variables"], template)
    return {"namespace": variables["POWERTOOLS_METRICS_NAMESPACE"], "service": variables["POWERTOOLS_SERVICE_NAME"]}


def alarm_metrics(template: dict[str, Any], properties: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric an alarm reads, resolved: {namespace, name, dimensions}."""
    if "MetricName" in properties:
        stats = [{"Metric": properties}]
    else:
        stats = [query["MetricStat"] for query in properties["Metrics"] if "MetricStat" in query]
    return [
        {
            "namespace": resolve(stat["Metric"]["Namespace"], template),
            "name": stat["Metric"]["MetricName"],
            "dimensions": {
                dimension["Name"]: resolve(dimension["Value"], template, _REFS)
                for dimension in stat["Metric"]["Dimensions"]
            },
        }
        for stat in stats
    ]


# Stand-ins for the physical names of the resources an alarm or widget is scoped to.
_REFS = {
    "HttpApi": "<api>",
    "PayoutLinksFunction": "<function>",
    "SettlerFunction": "<settler>",
    "IdempotencyTable": "<table>",
    "LinkOwnersTable": "<owners-table>",
}
_DIMENSION_OF = {"AWS/ApiGateway": ("ApiId", "<api>"), "AWS/Lambda": ("FunctionName", "<function>")}


@pytest.mark.parametrize("alarm", ALARMS)
def test_each_alarm_watches_its_metrics_and_reaches_the_topic(template, powertools, alarm):
    properties = template["Resources"][alarm]["Properties"]
    watched = alarm_metrics(template, properties)

    assert {(metric["namespace"], metric["name"]) for metric in watched} == ALARMS[alarm]
    for metric in watched:
        if metric["namespace"] == powertools["namespace"]:
            assert metric["name"] in FUNCTION_METRICS
            assert_function_dimensions(metric["name"], metric["dimensions"], powertools)
        elif metric["namespace"] == "AWS/DynamoDB":
            assert metric["dimensions"] in ({"TableName": "<table>"}, {"TableName": "<owners-table>"})
        elif alarm in SETTLER_ALARMS:
            assert metric["dimensions"] == {"FunctionName": "<settler>"}
        else:
            assert metric["dimensions"] == dict([_DIMENSION_OF[metric["namespace"]]])
    assert properties["AlarmActions"] == properties["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert properties["TreatMissingData"] == ("breaching" if alarm in BREACHING_WHEN_MISSING else "notBreaching")
    if "Metrics" in properties:
        assert [query.get("ReturnData", True) for query in properties["Metrics"]].count(True) == 1


def assert_function_dimensions(name: str, dimensions: dict[str, str], powertools: dict[str, str]) -> None:
    """The dimensions a function metric is emitted with: the service, and for some one more of their own."""
    expected = {"service": powertools["service"]}
    if name in EXTRA_DIMENSIONS:
        dimension, values = EXTRA_DIMENSIONS[name]
        assert dimensions.get(dimension) in values, (name, dimensions)
        expected[dimension] = dimensions[dimension]
    assert dimensions == expected, name


def test_the_limit_refusals_alarm_adds_up_every_limit_and_its_threshold_is_a_parameter(template):
    """LimitExceeded is emitted once per refusing limit (its `limit` dimension): the alarm reads each one and sums
    them all, so that no limit's refusals go unwatched."""
    properties = template["Resources"]["LimitRefusalsAlarm"]["Properties"]
    parameter = template["Parameters"]["LimitRefusalsAlarmThreshold"]
    watched = alarm_metrics(template, properties)
    (expression,) = [query["Expression"] for query in properties["Metrics"] if "Expression" in query]
    read = {query["Id"] for query in properties["Metrics"] if "MetricStat" in query}

    assert sorted(metric["dimensions"]["limit"] for metric in watched) == sorted(limit.value for limit in Limit)
    assert {f"FILL({query}, 0)" for query in read} == set(expression.split(" + "))
    assert properties["Threshold"] == {"Ref": "LimitRefusalsAlarmThreshold"}
    assert (parameter["Type"], parameter["MinValue"], parameter["Default"]) == ("Number", 1, 100)
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    periods = {query["MetricStat"]["Period"] for query in properties["Metrics"] if "MetricStat" in query}
    assert periods == {300} and properties["EvaluationPeriods"] == 1


def test_a_single_stranded_intent_pages_and_so_does_an_old_due_one(template):
    """StrandedIntents is the count of every stranded intent, reported by each run: its largest value in 5 minutes
    is the count. The oldest due intent's age is compared with a parameter whose default is half an hour."""
    stranded = template["Resources"]["StrandedIntentsAlarm"]["Properties"]
    assert (stranded["Statistic"], stranded["ComparisonOperator"], stranded["Threshold"]) == (
        "Maximum",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    oldest = template["Resources"]["OldestDueIntentAlarm"]["Properties"]
    parameter = template["Parameters"]["OldestDueIntentAgeAlarmThreshold"]
    assert (oldest["Statistic"], oldest["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert oldest["Threshold"] == {"Ref": "OldestDueIntentAgeAlarmThreshold"}
    assert (parameter["Type"], parameter["Default"]) == ("Number", 1800)
    # Well above the age at which a healthy settler resends an intent first: its lock (the function's timeout),
    # SettleAfterSeconds, and at most one schedule period.
    first_resend = (
        template["Parameters"]["FunctionTimeoutSeconds"]["MaxValue"]
        + template["Parameters"]["SettleAfterSeconds"]["Default"]
        + 60
    )
    assert parameter["MinValue"] >= 300 and parameter["Default"] >= 5 * first_resend
    for properties in (stranded, oldest):
        assert (properties["Period"], properties["EvaluationPeriods"]) == (300, 1)


@pytest.mark.parametrize("alarm", ["MismatchedLinkNotCanceledAlarm", "UpstreamLinkConflictAlarm"])
def test_a_link_that_may_be_paid_wrongly_pages_at_once(template, alarm):
    properties = template["Resources"][alarm]["Properties"]
    assert (properties["Statistic"], properties["Period"], properties["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_a_settler_that_stops_running_or_keeps_failing_raises_an_alarm(template):
    """The settler reports IntentsDue on every run that completes (0 included): no sample in two 5-minute periods
    is no run in 10 minutes, whatever the cause, and missing data breaches. Its own Lambda errors raise another,
    once most of the runs of 5 minutes failed (a failed run is not retried; the next comes a minute later)."""
    resources = template["Resources"]
    not_running = resources["SettlerNotRunningAlarm"]["Properties"]
    assert (not_running["Statistic"], not_running["Period"]) == ("SampleCount", 300)
    assert not_running["EvaluationPeriods"] == not_running["DatapointsToAlarm"] == 2
    assert (not_running["ComparisonOperator"], not_running["Threshold"]) == ("LessThanThreshold", 1)
    assert not_running["TreatMissingData"] == "breaching"
    (event,) = resources["SettlerFunction"]["Properties"]["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(1 minute)"  # so 10 minutes hold about 10 runs

    errors = resources["SettlerErrorsAlarm"]["Properties"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SettlerFunction"}}]
    assert (errors["Statistic"], errors["Period"], errors["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (errors["ComparisonOperator"], errors["Threshold"]) == ("GreaterThanOrEqualToThreshold", 3)


def test_the_throttles_alarm_watches_both_tables(template):
    properties = template["Resources"]["TableThrottlesAlarm"]["Properties"]
    tables = {metric["dimensions"]["TableName"] for metric in alarm_metrics(template, properties)}
    (expression,) = [query["Expression"] for query in properties["Metrics"] if "Expression" in query]

    assert tables == {"<table>", "<owners-table>"}
    # Every throttle of either table counts: no metric is read and left out of the sum.
    read = {query["Id"] for query in properties["Metrics"] if "MetricStat" in query}
    assert {f"FILL({query}, 0)" for query in read} == set(expression.split(" + "))


@pytest.mark.parametrize("alarm", INCIDENT_ALARMS)
def test_each_incident_class_pages_on_a_handful_of_events_whatever_the_traffic(template, alarm):
    """A Sum over 5 minutes against a parameter whose default is a handful: a few failing requests page even when
    they are all the traffic there is (a rate of a busy hour paged nobody for six). No data is no news."""
    properties = template["Resources"][alarm]["Properties"]
    parameter = template["Parameters"][INCIDENT_ALARMS[alarm]]

    assert properties["Threshold"] == {"Ref": INCIDENT_ALARMS[alarm]}
    assert (parameter["Type"], parameter["MinValue"]) == ("Number", 1)
    assert 1 <= parameter["Default"] <= 5, parameter["Default"]
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert properties["EvaluationPeriods"] == 1 and "DatapointsToAlarm" not in properties
    assert properties["TreatMissingData"] == "notBreaching"
    if "MetricName" in properties:
        stats = [(properties["Statistic"], properties["Period"])]
    else:
        stats = [(query["MetricStat"]["Stat"], query["MetricStat"]["Period"]) for query in properties["Metrics"][1:]]
        assert "MetricStat" not in properties["Metrics"][0]
    assert stats and set(stats) == {("Sum", 300)}
    # The description names the threshold by its parameter, so that the page says what it took.
    assert "${" + INCIDENT_ALARMS[alarm] + "}" in properties["AlarmDescription"]["Fn::Sub"]


def test_the_api_5xx_alarm_counts_api_gateways_5xx_of_this_api(template):
    properties = template["Resources"]["ApiServerErrorsAlarm"]["Properties"]
    (metric,) = alarm_metrics(template, properties)
    # HTTP APIs publish `5xx` (not REST APIs' `5XXError`) with the ApiId dimension.
    assert metric == {"namespace": "AWS/ApiGateway", "name": "5xx", "dimensions": {"ApiId": "<api>"}}
    # One 5xx alarm: a count; the rate it replaces paged nobody below 20 requests in 5 minutes.
    assert not any("api-5xx-rate" in str(resource) for resource in template["Resources"].values())


def test_the_credentials_alarm_counts_the_rejections_a_re_read_of_the_secret_did_not_cure(template):
    """A 401 is retried once with the secret read again (CredentialsRefreshed, once per 401 retried): a rotation
    the secret followed is one rejection and one re-read, nothing to page for; keys Dots refuses are one rejection
    more per failing request."""
    properties = template["Resources"]["UpstreamCredentialsRejectedAlarm"]["Properties"]
    ids = {query["MetricStat"]["Metric"]["MetricName"]: query["Id"] for query in properties["Metrics"][1:]}
    (expression,) = [query["Expression"] for query in properties["Metrics"] if "Expression" in query]
    rejected, refreshed = ids["UpstreamErrorCredentialsRejected"], ids["CredentialsRefreshed"]
    assert expression == f"FILL({rejected}, 0) - FILL({refreshed}, 0)"


def test_the_dependency_alarm_adds_up_every_dependency_as_the_function_names_them(template):
    properties = template["Resources"]["DependencyUnavailableAlarm"]["Properties"]
    watched = alarm_metrics(template, properties)
    (expression,) = [query["Expression"] for query in properties["Metrics"] if "Expression" in query]
    read = {query["Id"] for query in properties["Metrics"] if "MetricStat" in query}

    assert {metric["name"] for metric in watched} == {DEPENDENCY_UNAVAILABLE_METRIC}
    assert sorted(metric["dimensions"]["dependency"] for metric in watched) == sorted(d.value for d in Dependency)
    assert {f"FILL({query}, 0)" for query in read} == set(expression.split(" + "))


@pytest.mark.parametrize(
    ("status", "alarm"),
    [
        (401, "UpstreamCredentialsRejectedAlarm"),
        (403, "UpstreamCredentialsRejectedAlarm"),
        (429, "UpstreamRateLimitedAlarm"),
    ],
)
def test_the_upstream_alarms_read_the_counts_the_client_emits_for_those_statuses(template, status, alarm):
    """The metric names are the code's (upstream.error_metric), not a copy that could drift from it."""
    properties = template["Resources"][alarm]["Properties"]
    assert upstream.error_metric("4xx", status) in {metric["name"] for metric in alarm_metrics(template, properties)}
    assert upstream.error_metric("4xx", 400) not in {metric["name"] for metric in alarm_metrics(template, properties)}


def test_the_dashboard_marks_the_5xx_alarms_threshold(dashboard, template):
    (widget,) = [
        widget["properties"]
        for widget in dashboard["widgets"]
        if any(metric[:2] == ["AWS/ApiGateway", "5xx"] for metric in widget["properties"].get("metrics", []))
        and "annotations" in widget["properties"]
    ]
    default = template["Parameters"]["ApiServerErrorsAlarmThreshold"]["Default"]
    assert widget["annotations"]["horizontal"][0]["value"] == default


def test_the_webhook_refusals_alarm_fires_on_a_flood_well_below_what_the_route_lets_through(template):
    """The webhook route's throttle is shared by every partner and spent by unsigned requests: a flood of forgeries
    at its rate keeps partners at 429. Its refusals reach the function and raise the alarm long before that."""
    properties = template["Resources"]["WebhookRefusalsAlarm"]["Properties"]
    parameter = template["Parameters"]["WebhookRefusalsAlarmThreshold"]
    route = template["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["POST /webhooks/{partner}/payout-links"]
    let_through = route["ThrottlingRateLimit"] * properties["Period"]

    assert properties["Threshold"] == {"Ref": "WebhookRefusalsAlarmThreshold"}
    assert (parameter["Type"], parameter["MinValue"]) == ("Number", 1)
    assert 0 < parameter["Default"] <= let_through / 5, (parameter["Default"], let_through)
    assert (properties["Statistic"], properties["Period"], properties["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("alarm", ["PartnerSecretSharedAlarm", "PartnerSecretUnusableAlarm"])
def test_a_partner_secret_shared_by_several_partners_or_unusable_pages_at_once(template, alarm):
    """PartnerSecretShared counts the partners refused for a shared secret, PartnerSecretUnusable those left out for an
    entry that cannot be used, each once per read of the partner secrets: any sample is a misconfiguration that keeps
    partners out (docs/operations.md), and no sample is no news."""
    properties = template["Resources"][alarm]["Properties"]
    assert (properties["Statistic"], properties["Period"], properties["EvaluationPeriods"]) == ("Maximum", 300, 1)
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert properties["TreatMissingData"] == "notBreaching"


def test_there_is_one_alarm_per_failure_and_an_optional_email(template):
    resources = template["Resources"]
    alarms = {name for name, resource in resources.items() if resource["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms == set(ALARMS)
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "SubscribeAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


@pytest.fixture(scope="module")
def dashboard(template) -> dict[str, Any]:
    """The dashboard body with its `${...}` placeholders filled the way CloudFormation's !Sub fills them."""
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    values = {name: str(resolve(value, template)) for name, value in variables.items()}
    values.update({"AWS::Region": "eu-west-1", **_REFS})

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        resource, _, attribute = name.partition(".")
        assert resource in template["Resources"], f"${{{name}}} names nothing in the template"
        return f"<{resource}{'.' + attribute if attribute else ''}>"

    return json.loads(re.sub(r"\$\{([^}]+)\}", fill, body))


def test_the_dashboard_shows_what_operators_read(dashboard, powertools):
    shown = set()
    limits_shown: set[str] = set()
    for widget in dashboard["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            namespace, name, *rest = metric
            dimensions = dict(zip(rest[0:-1:2], rest[1::2], strict=True))
            shown.add((namespace, name))
            if namespace == powertools["namespace"]:
                assert name in FUNCTION_METRICS
                if name == "ColdStart":  # Powertools adds the function's name to the cold start metric
                    assert dimensions == {"service": powertools["service"], "function_name": "<function>"}
                else:
                    assert_function_dimensions(name, dimensions, powertools)
                    limits_shown.update({dimensions["limit"]} if name == "LimitExceeded" else set())
            elif "Settler" in widget["properties"]["title"]:
                assert dimensions == {"FunctionName": "<settler>"}, name
            else:
                assert dimensions == dict([_DIMENSION_OF[namespace]]), name
    assert shown == DASHBOARD_METRICS
    assert limits_shown == {limit.value for limit in Limit}  # the refusals of every limit


def test_the_dashboard_shows_latency_percentiles_causes_and_every_alarm(dashboard):
    widgets = {widget["properties"]["title"]: widget for widget in dashboard["widgets"]}
    latency = next(widget for title, widget in widgets.items() if title.startswith("Upstream latency"))
    assert [metric[-1]["stat"] for metric in latency["properties"]["metrics"]] == ["p50", "p99"]
    (alarms,) = [widget for widget in dashboard["widgets"] if widget["type"] == "alarm"]
    assert alarms["properties"]["alarms"] == [f"<{alarm}.Arn>" for alarm in ALARMS]
    queries = [widget["properties"]["query"] for widget in dashboard["widgets"] if widget["type"] == "log"]
    # The function logs every refusal once, as "request refused" with its status and outcome.
    assert any(
        query.startswith("SOURCE '<PayoutLinksFunctionLogGroup>'")
        and "filter message = 'request refused'" in query
        and "by status, outcome" in query
        for query in queries
    )
    assert any("<HttpApiAccessLogGroup>" in query for query in queries)
    # The settler logs one "settler run" line per run, its report under `settler`.
    assert any(
        query.startswith("SOURCE '<SettlerFunctionLogGroup>'") and "filter message = 'settler run'" in query
        for query in queries
    )


def test_the_dashboard_shows_what_each_settler_run_did_and_the_oldest_due_intent_against_its_alarm(dashboard, template):
    widgets = {widget["properties"]["title"]: widget["properties"] for widget in dashboard["widgets"]}
    runs = widgets["Settler: intents per run"]
    # One sample per run, a run a minute: 1-minute sums are each run's own counts.
    assert runs["period"] == 60 and runs["stat"] == "Sum"
    labels = {metric[1]: metric[-1] for metric in runs["metrics"]}
    assert labels["StrandedIntents"]["stat"] == "Maximum"  # a count of all stranded intents, not an increment
    oldest = widgets["Settler: oldest due intent (s)"]
    default = template["Parameters"]["OldestDueIntentAgeAlarmThreshold"]["Default"]
    assert oldest["stat"] == "Maximum" and oldest["annotations"]["horizontal"][0]["value"] == default


def test_the_outputs_lead_to_the_api_and_the_dashboard(template):
    outputs = template["Outputs"]
    assert {
        "ApiUrl",
        "DashboardUrl",
        "AlarmTopicArn",
        "IdempotencyTableName",
        "PayoutLinksFunctionName",
        "SettlerFunctionName",
    } <= set(outputs)
    assert outputs["SettlerFunctionName"]["Value"] == {"Ref": "SettlerFunction"}
    assert "${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]
