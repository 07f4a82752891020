"""Hostile input: whatever arrives, the answer is a 201 or a problem+json whose status is the HTTP status,
never a 5xx."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support import payout_body

pytestmark = pytest.mark.properties

FIELDS = [
    "amount",
    "user_id",
    "payee",
    "delivery",
    "force_collect_compliance_information",
    "additional_steps",
    "tax_exempt",
    "metadata",
    "memo",
    "idempotency_key",
    "payout_fee_party",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "1e309", "sms", "all", "payout", "user", "\u0000", "\ud7ff\ue000", "💸" * 8])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)


@st.composite
def almost_valid_bodies(draw) -> str:
    """A valid request with some fields replaced by anything, some dropped, and maybe an unknown one added."""
    body = payout_body()
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[field] = draw(json_values)
    for field in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        body.pop(field, None)
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return json.dumps(body)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


bodies = st.one_of(
    almost_valid_bodies(),
    json_values.map(json.dumps),
    st.integers(min_value=1, max_value=20_000).map(nested),
    st.integers(min_value=1, max_value=3_000).map(lambda n: '{"amount": ' + "9" * n + ', "user_id": "u"}'),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.text(max_size=200),
)
# Mostly well-formed headers, so that most examples reach the body parser.
content_types = st.one_of(
    st.just("application/json"),
    st.just("application/json"),
    st.just("application/json"),
    st.sampled_from(["application/json; charset=utf-8", "application/problem+json", "text/plain", "", "*/*"]),
    st.text(max_size=30),
)
fresh_keys = st.builds(lambda: str(uuid.uuid4()))
keys = st.one_of(fresh_keys, fresh_keys, fresh_keys, st.text(max_size=300), st.none())


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies, content_type=content_types, key=keys)
def test_no_body_gets_a_5xx(function, upstream, body, content_type, key):
    result = function.create(body, key=key, headers={"content-type": content_type})
    event(f"HTTP {result.status}")  # the spread of answers shows in --hypothesis-show-statistics

    assert result.status < 500, result.body
    if result.status != 201:
        assert result.is_problem(), (result.status, result.headers, result.body)
