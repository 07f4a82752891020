"""A small evaluator of the template's own alarms against metric values a test captured: the EMF lines a function
printed (CloudWatch turns each into metric data), and, for API Gateway's metrics, which the local stack does not
publish, the answers the test's client got.

An alarm is read from template.yaml with the project's template loader (`alarm_rule`), its threshold parameter at its
default. Its value over one period is what CloudWatch would compute from the same data: for each metric it reads, the
Sum of the values of that metric under exactly the alarm's dimension set (a value published under another set of
dimensions is another metric, as in CloudWatch), then its expression (`FILL(id, 0)` terms added or subtracted), then
the comparison with the threshold. Only what the template's alarms use is supported: anything else is an error, never
a silent "does not fire"."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from local_stack.core.template import load_template, resolve
from local_stack.stack import TEMPLATE_PATH

# Stand-ins for the physical names of the resources an alarm's dimensions name (as in tests/infra/test_monitoring.py).
PHYSICAL_NAMES = {
    "HttpApi": "<api>",
    "PayoutLinksFunction": "<function>",
    "SettlerFunction": "<settler>",
    "IdempotencyTable": "<table>",
    "LinkOwnersTable": "<owners-table>",
}
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_TERM = re.compile(r"\s*([+-])?\s*FILL\((\w+), 0\)\s*")


@dataclass(frozen=True)
class Sample:
    """One value of one metric, under one dimension set."""

    namespace: str
    name: str
    dimensions: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class MetricStat:
    namespace: str
    name: str
    dimensions: Mapping[str, str]
    stat: str
    period: int

    def total(self, samples: Iterable[Sample]) -> float:
        if self.stat != "Sum":
            raise ValueError(f"only Sum is evaluated here, not {self.stat}")
        return sum(
            sample.value
            for sample in samples
            if (sample.namespace, sample.name) == (self.namespace, self.name)
            and dict(sample.dimensions) == dict(self.dimensions)
        )


@dataclass(frozen=True)
class AlarmRule:
    logical_id: str
    name: str  # the alarm's name without the stack's
    metrics: Mapping[str, MetricStat]  # by the id the expression uses
    terms: tuple[tuple[int, str], ...]  # (sign, metric id) added up
    comparison: str
    threshold: float
    period: int

    def value(self, samples: Iterable[Sample]) -> float:
        samples = list(samples)
        return sum(sign * self.metrics[metric_id].total(samples) for sign, metric_id in self.terms)

    def fires(self, samples: Iterable[Sample]) -> bool:
        return _COMPARISONS[self.comparison](self.value(samples), self.threshold)


def alarm_rule(logical_id: str, template: dict[str, Any] | None = None) -> AlarmRule:
    """The alarm `logical_id` of template.yaml, resolved as CloudFormation would deploy it with every parameter at its
    default (so its threshold is the threshold parameter's default)."""
    template = template or load_template(TEMPLATE_PATH)
    properties = template["Resources"][logical_id]["Properties"]
    if properties.get("EvaluationPeriods") != 1:
        raise ValueError(f"{logical_id}: only alarms of one evaluation period are evaluated here")
    if "MetricName" in properties:
        stats = {"m": {"Metric": properties, "Stat": properties["Statistic"], "Period": properties["Period"]}}
        terms: tuple[tuple[int, str], ...] = ((1, "m"),)
    else:
        stats = {query["Id"]: query["MetricStat"] for query in properties["Metrics"] if "MetricStat" in query}
        (expression,) = [query["Expression"] for query in properties["Metrics"] if query.get("ReturnData", True)]
        terms = _terms(expression)
    metrics = {
        metric_id: MetricStat(
            namespace=resolve(stat["Metric"]["Namespace"], template),
            name=stat["Metric"]["MetricName"],
            dimensions={
                dimension["Name"]: resolve(dimension["Value"], template, PHYSICAL_NAMES)
                for dimension in stat["Metric"]["Dimensions"]
            },
            stat=stat["Stat"],
            period=stat["Period"],
        )
        for metric_id, stat in stats.items()
    }
    (period,) = {metric.period for metric in metrics.values()}
    return AlarmRule(
        logical_id=logical_id,
        name=properties["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"),
        metrics=metrics,
        terms=terms,
        comparison=properties["ComparisonOperator"],
        threshold=float(resolve(properties["Threshold"], template)),
        period=period,
    )


def _terms(expression: str) -> tuple[tuple[int, str], ...]:
    terms, position = [], 0
    while position < len(expression):
        match = _TERM.match(expression, position)
        if match is None or (terms and match.group(1) is None):
            raise ValueError(f"cannot evaluate the expression {expression!r}")
        terms.append((-1 if match.group(1) == "-" else 1, match.group(2)))
        position = match.end()
    return tuple(terms)


def emf_samples(text: str) -> list[Sample]:
    """Every value of every metric of the EMF documents among `text`'s lines, under each of its dimension sets."""
    samples = []
    for line in text.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for definition in directive["Metrics"]:
                values = document[definition["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    for dimension_set in directive["Dimensions"]:
                        dimensions = {name: document[name] for name in dimension_set}
                        samples.append(Sample(directive["Namespace"], definition["Name"], dimensions, float(value)))
    return samples


def api_gateway_samples(statuses: Iterable[int]) -> list[Sample]:
    """What API Gateway publishes for an HTTP API's answers (`Count`, `4xx`, `5xx`, by ApiId), from the statuses
    the client got: the local gateway publishes no metrics of its own."""
    samples = []
    for status in statuses:
        api = {"ApiId": PHYSICAL_NAMES["HttpApi"]}
        samples.append(Sample("AWS/ApiGateway", "Count", api, 1.0))
        for kind in ("4xx", "5xx"):
            samples.append(Sample("AWS/ApiGateway", kind, api, 1.0 if status // 100 == int(kind[0]) else 0.0))
    return samples
