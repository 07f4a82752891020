"""Print the CloudFormation that the SAM translator makes of a template, as JSON: what CloudFormation deploys.

Run with the SAM tooling's interpreter (its samtranslator clashes with the app's pins):

    .venv-tools/bin/python tests/infra/sam_translate.py template.yaml '{"Parameter": "value", ...}'

Local CodeUri/ContentUri paths become S3 URIs first, as `sam package` would make them; no AWS call is made.
"""

from __future__ import annotations

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    """The template names no managed policy by name, so the translator never needs IAM's list of them."""

    def load(self) -> dict[str, str]:
        return {}


def main(path: str, parameters: str = "{}") -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(path, encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://packaged-artifacts/{key.lower()}.zip"
    values = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
    values.update(json.loads(parameters))
    json.dump(transform(template, values, _NoManagedPolicies()), sys.stdout, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])
