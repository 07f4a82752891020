"""The AWS side of a local stack: an embedded moto server, and tables and secrets created (as the template declares
a table) when missing and left alone when present, so that their data survives a restart against a long-lived
endpoint."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import boto3
from botocore.exceptions import ClientError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto_server() -> tuple[Any, str]:
    """An in-process moto server on a free loopback port; returns the server and its endpoint URL."""
    from moto.server import ThreadedMotoServer  # only needed when no endpoint was given

    from local_stack.core import moto_transactions

    moto_transactions.patch()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per AWS call is noise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def ensure_table(dynamodb: Any, template: dict[str, Any], resource: str, table_name: str) -> bool:
    """Create the table `resource` (a logical id) as the template declares it, named `table_name`; True when it had
    to be created."""
    properties = template["Resources"][resource]["Properties"]
    try:
        dynamodb.describe_table(TableName=table_name)
        return False
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode="PAY_PER_REQUEST",  # whatever the template's capacity: it means nothing to moto
        **_indexes(properties),
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    return True


def _indexes(properties: dict[str, Any]) -> dict[str, Any]:
    """The table's global secondary indexes as the template declares them (on-demand, like the table)."""
    indexes = [
        {name: index[name] for name in ("IndexName", "KeySchema", "Projection")}
        for index in properties.get("GlobalSecondaryIndexes", [])
    ]
    return {"GlobalSecondaryIndexes": indexes} if indexes else {}


def ensure_secret(secrets: Any, name: str, value: dict[str, Any], *, overwrite: bool) -> bool:
    """Create the secret when missing; replace its value only when `overwrite`. True when written."""
    body = json.dumps(value)
    try:
        secrets.create_secret(Name=name, SecretString=body)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
    if overwrite:
        secrets.put_secret_value(SecretId=name, SecretString=body)
    return overwrite


def clients(endpoint_url: str, region: str) -> tuple[Any, Any]:
    session = boto3.session.Session(region_name=region)
    return (
        session.client("dynamodb", endpoint_url=endpoint_url),
        session.client("secretsmanager", endpoint_url=endpoint_url),
    )
