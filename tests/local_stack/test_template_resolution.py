"""How the local stack's core (local_stack/core/template.py) reads template values: parameters at their defaults,
conditions and mappings included."""

from __future__ import annotations

import pytest

from local_stack.core.template import resolve

pytestmark = pytest.mark.unit

TEMPLATE = {
    "Parameters": {
        "Count": {"Type": "Number", "Default": 0},
        "Arn": {"Type": "String", "Default": ""},
        "Flag": {"Type": "String", "Default": "true"},
    },
    "Mappings": {"Names": {"Metrics": {"Namespace": "Ns"}}},
    "Conditions": {
        "HasCount": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Count"}, "0"]}]},
        "NoArn": {"Fn::Equals": [{"Ref": "Arn"}, ""]},
        "Both": {"Fn::And": [{"Condition": "NoArn"}, {"Fn::Equals": [{"Ref": "Flag"}, "true"]}]},
        "Either": {"Fn::Or": [{"Condition": "HasCount"}, {"Condition": "NoArn"}]},
    },
    "Resources": {},
}


@pytest.mark.parametrize(
    ("condition", "chosen"), [("HasCount", "no"), ("NoArn", "yes"), ("Both", "yes"), ("Either", "yes")]
)
def test_if_follows_its_condition_at_the_parameters_defaults(condition, chosen):
    assert resolve({"Fn::If": [condition, "yes", "no"]}, TEMPLATE) == chosen


def test_the_chosen_branch_is_resolved_too():
    value = {"Fn::If": ["NoArn", {"Ref": "Secret"}, {"Ref": "Arn"}]}

    assert resolve(value, TEMPLATE, {"Secret": "local-secret"}) == "local-secret"


def test_find_in_map_reads_the_mappings():
    assert resolve({"Fn::FindInMap": ["Names", "Metrics", "Namespace"]}, TEMPLATE) == "Ns"


def test_what_cannot_be_resolved_locally_says_so():
    with pytest.raises(ValueError, match="cannot resolve"):
        resolve({"Fn::GetAtt": "Table.Arn"}, TEMPLATE)
