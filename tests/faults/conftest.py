"""Fixtures for breaking things on purpose: AWS calls that fail, and function processes that die."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from local_stack.core.workers import LambdaWorker, WorkerPool
from tests.conftest import function_env
from tests.faults.aws_fault_proxy import AwsFaultProxy

HANDLER = "payout_links.app.lambda_handler"


@pytest.fixture
def aws_faults(aws_endpoint: str, function) -> Iterator[AwsFaultProxy]:
    """The in-process function's DynamoDB and Secrets Manager calls go through a proxy that fails on demand."""
    proxy = AwsFaultProxy(aws_endpoint)
    function.set_env(AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint, AWS_ENDPOINT_URL_SECRETS_MANAGER=proxy.endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture
def container_env(aws_resources, upstream) -> dict[str, str]:
    return {**os.environ, **function_env(upstream.base_url)}


@pytest.fixture
def containers(container_env, tmp_path) -> Iterator[Callable[[float], LambdaWorker]]:
    """Start real function processes, each a Lambda execution environment with the given timeout. They share
    the session's moto server (over HTTP) and the emulator; whatever is left at the end is killed."""
    started: list[LambdaWorker] = []
    log = (tmp_path / "containers.log").open("w")

    def start(timeout_seconds: float) -> LambdaWorker:
        worker = LambdaWorker(HANDLER, container_env, timeout_seconds, log=log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
    log.close()


@pytest.fixture
def container_pool(container_env) -> Iterator[Callable[[int], WorkerPool]]:
    pools: list[WorkerPool] = []

    def start(size: int) -> WorkerPool:
        pool = WorkerPool(size, HANDLER, container_env, timeout_seconds=20)
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()
