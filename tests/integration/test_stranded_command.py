"""scripts/stranded.py (`make stranded`) against the moto server: it lists the intents the store stranded, with what
an operator needs to find each one's link at Dots, and never the payee's contact details (docs/operations.md)."""

from __future__ import annotations

import json

import pytest

from payout_links.intent import record_id
from scripts import stranded
from tests.support import EMAIL, PHONE, new_key

pytestmark = pytest.mark.integration


def test_a_stranded_intent_is_listed_with_its_upstream_key_and_without_the_payees_details(
    function, upstream, aws_resources, capsys
):
    # A record that would expire before its intent is due: the create's unknown outcome strands it at once.
    function.set_env(IDEMPOTENCY_TTL_SECONDS="60", SETTLE_AFTER_SECONDS="120", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"status": 500, "after_create": True})
    key = new_key()

    lost = function.create(key=key)
    assert lost.status == 502 and lost.json()["key_state"] == "bound"
    (link,) = upstream.links()
    capsys.readouterr()  # the function's log lines

    assert stranded.main(["--table", aws_resources["table"]]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out)
    (intent,) = [entry for entry in listed["stranded"] if entry["record_id"] == record_id("user:user-1", key)]

    # The key Dots made the link under: what the operator looks it up by.
    assert intent["upstream_key"] == link["idempotency_key"]
    assert (intent["caller"], intent["idempotency_key"], intent["settle_attempts"]) == ("user:user-1", key, 0)
    assert 0 <= intent["age_seconds"] < 60 and intent["first_attempt"].endswith("Z")
    assert intent["record_expires"] > intent["first_attempt"]  # kept for operators beyond the record's TTL
    assert listed["count"] == len(listed["stranded"]) >= 1
    assert PHONE not in out and EMAIL not in out and "Ada" not in out


def test_the_table_is_the_option_or_the_functions_variable_and_a_failure_is_said_plainly(
    aws_resources, monkeypatch, capsys
):
    monkeypatch.delenv("IDEMPOTENCY_TABLE_NAME", raising=False)
    assert stranded.main([]) == 2
    assert "IDEMPOTENCY_TABLE_NAME" in capsys.readouterr().err

    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", aws_resources["table"])
    assert stranded.main([]) == 0
    assert "stranded" in json.loads(capsys.readouterr().out)

    assert stranded.main(["--table", "no-such-table"]) == 1
    assert "ResourceNotFoundException" in capsys.readouterr().err
