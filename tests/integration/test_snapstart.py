"""SnapStart hooks (functions/payout_links/snapstart.py), called the way Lambda calls them: before the snapshot on a
container that has served nothing, after a (simulated) restore on one that has. Against moto and the emulator."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_calls(function):
    """Every call the function's boto3 clients make from now on, by operation name."""
    from payout_links import aws

    calls: list[str] = []
    for name in aws.CLIENTS_IN_USE:
        aws.client(name).meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


def test_the_hooks_are_registered_with_the_runtimes_library(function):
    import snapshot_restore_py

    from payout_links import snapstart

    before = len(snapshot_restore_py.get_before_snapshot())
    assert snapstart.register() is True

    assert snapshot_restore_py.get_before_snapshot()[before:] == [(snapstart.before_snapshot, (), {})]
    assert snapshot_restore_py.get_after_restore()[-1] == (snapstart.after_restore, (), {})


def test_before_the_snapshot_everything_is_built_and_nothing_is_opened_or_read(function, upstream, aws_calls):
    from payout_links import service, snapstart

    snapstart.before_snapshot()

    built = service.get_service()
    assert service.get_service.cache_info().currsize == 1 and service.get_partner_secrets.cache_info().currsize == 1
    assert aws_calls == []  # no secret read, no table touched
    assert upstream.stats()["connections"] == 0
    assert built.payout_api.credentials._cached is None
    assert function.create().status == 201  # and the container serves as usual


def test_after_a_restore_nothing_from_the_snapshot_is_shared(function, upstream, aws_calls):
    from payout_links import aws, service, snapstart

    snapstart.before_snapshot()
    assert function.create().status == 201  # the container now holds a connection, the credentials, the secrets
    function.webhook()
    built = service.get_service()
    pool = built.payout_api.http._transport._pool
    assert len(pool.connections) == 1 and built.payout_api.credentials._cached is not None
    assert any(aws.client(name)._endpoint.http_session._manager.pools for name in aws.CLIENTS_IN_USE)

    signed_with = {name: aws.client(name)._request_signer._credentials for name in aws.CLIENTS_IN_USE}

    snapstart.after_restore()

    assert service.get_service() is built  # the clients are kept: building them again is what SnapStart saves
    # ...but not the AWS credentials they resolved before the snapshot: each environment resolves its own.
    renewed = {name: aws.client(name)._request_signer._credentials for name in aws.CLIENTS_IN_USE}
    assert all(renewed[name] is not signed_with[name] for name in aws.CLIENTS_IN_USE)
    assert renewed["dynamodb"] is renewed["secretsmanager"]
    assert len(pool.connections) == 0
    assert built.payout_api.credentials._cached is None
    assert service.get_partner_secrets()._secret._cached is None
    for name in aws.CLIENTS_IN_USE:
        assert not aws.client(name)._endpoint.http_session._manager.pools, name
    # The next request reads the secret again and opens a new connection, and works.
    aws_calls.clear()
    connections = upstream.stats()["connections"]
    assert function.create().status == 201
    assert aws_calls.count("GetSecretValue") == 1
    assert upstream.stats()["connections"] == connections + 1


def test_restored_copies_of_one_snapshot_draw_different_jitter(function):
    from payout_links import snapstart

    snapstart.before_snapshot()
    random.seed(20261130)
    snapshot = random.getstate()
    draws = []
    for _ in range(2):  # two environments restored from the same snapshot
        random.setstate(snapshot)
        snapstart.after_restore()
        draws.append(random.random())

    assert draws[0] != draws[1]


@pytest.mark.parametrize("max_amount_cents", ["1", "99"])
def test_the_snapshot_is_taken_under_every_allowed_amount_limit(function, max_amount_cents):
    from payout_links import snapstart

    function.set_env(MAX_AMOUNT_CENTS=max_amount_cents)

    snapstart.before_snapshot()  # a failure here would fail the version's publication, and the deploy
