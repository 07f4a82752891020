"""Read `template.yaml` so that the local stack and the tests follow the template instead of copying it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that keeps intrinsic functions (`!Ref`, `!Sub`, ...) as `{"Fn": value}` mappings."""


def _intrinsic(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 - the loader is a SafeLoader subclass


def function_settings(
    function: str, physical_names: dict[str, str], template: dict[str, Any] | None = None
) -> tuple[dict[str, str], float, str]:
    """The function's environment (Globals merged with its own), timeout and handler, as the template declares
    them. A `!Ref` to a parameter takes the parameter's default; a `!Ref` to a resource takes its local name
    from `physical_names`."""
    template = template or load_template()
    defaults = template.get("Globals", {}).get("Function", {})
    properties = template["Resources"][function]["Properties"]
    variables = {
        **defaults.get("Environment", {}).get("Variables", {}),
        **properties.get("Environment", {}).get("Variables", {}),
    }
    parameters = template.get("Parameters", {})

    def resolve(name: str, value: Any) -> str:
        if not isinstance(value, dict):
            return str(value)
        if "Ref" in value and value["Ref"] in physical_names:
            return physical_names[value["Ref"]]
        if "Ref" in value and "Default" in parameters.get(value["Ref"], {}):
            return str(parameters[value["Ref"]]["Default"])
        raise ValueError(f"{name}: cannot resolve {value} locally; add it to the local stack's names")

    environment = {name: resolve(name, value) for name, value in variables.items()}
    timeout = float(properties.get("Timeout", defaults.get("Timeout", 3)))
    return environment, timeout, properties.get("Handler", defaults.get("Handler"))
