"""Read a SAM template, so that what runs locally follows the template instead of copying it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# What Lambda gives a function that names none.
DEFAULT_TIMEOUT_SECONDS = 3.0
DEFAULT_MEMORY_MB = 128


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that keeps intrinsic functions (`!Ref`, `!Sub`, ...) as `{"Fn": value}` mappings."""


def _intrinsic(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)  # the one other kind of node
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path) -> dict[str, Any]:
    """The template at `path`, read once per path (callers share the result: they must not change it)."""
    with Path(path).open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 - the loader is a SafeLoader subclass


def resolve(value: Any, template: dict[str, Any], physical_names: Mapping[str, str] | None = None) -> Any:
    """A template value as CloudFormation would see it with every parameter at its default. A `!Ref` to a
    parameter takes the parameter's default (a CommaDelimitedList's as a list of its items); a `!Ref` to a
    resource takes its local name from `physical_names`; `!If` follows its condition, evaluated with the same
    defaults; `!FindInMap` reads the template's Mappings; lists and mappings are resolved item by item."""
    physical_names = physical_names or {}
    if isinstance(value, list):
        return [resolve(item, template, physical_names) for item in value]
    if not isinstance(value, dict):
        return value
    if list(value) == ["Ref"]:
        name = value["Ref"]
        if name in physical_names:
            return physical_names[name]
        parameter = template.get("Parameters", {}).get(name, {})
        if "Default" in parameter:
            default = parameter["Default"]
            if parameter.get("Type") == "CommaDelimitedList":
                return [item.strip() for item in str(default).split(",")]
            return default
    if list(value) == ["Fn::If"]:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if _condition(condition, template, physical_names) else when_false
        return resolve(chosen, template, physical_names)
    if list(value) == ["Fn::FindInMap"]:
        mapping, top_key, second_key = resolve(value["Fn::FindInMap"], template, physical_names)
        return template["Mappings"][mapping][top_key][second_key]
    if any(key == "Ref" or key.startswith("Fn::") for key in value):
        raise ValueError(f"cannot resolve {value} locally; give the resource a local name")
    return {key: resolve(item, template, physical_names) for key, item in value.items()}


def _condition(name: str, template: dict[str, Any], physical_names: Mapping[str, str]) -> bool:
    return _holds(template["Conditions"][name], template, physical_names)


def _holds(expression: dict[str, Any], template: dict[str, Any], physical_names: Mapping[str, str]) -> bool:
    """A condition function (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`), evaluated locally."""
    ((function, arguments),) = expression.items()
    if function == "Condition":
        return _condition(arguments, template, physical_names)
    if function == "Fn::Equals":
        left, right = resolve(arguments, template, physical_names)
        return str(left) == str(right)  # CloudFormation compares parameters, numbers included, as strings
    results = [_holds(argument, template, physical_names) for argument in arguments]
    if function == "Fn::Not":
        return not results[0]
    if function == "Fn::And":
        return all(results)
    if function == "Fn::Or":
        return any(results)
    raise ValueError(f"cannot evaluate the condition function {function} locally")


@dataclass
class FunctionSettings:
    """A function as the template declares it (Globals merged with its own properties), its values resolved."""

    environment: dict[str, str]
    timeout_seconds: float
    memory_mb: int
    handler: str
    code_uri: str  # relative to the template's directory


def function_settings(
    template: dict[str, Any], function: str, physical_names: Mapping[str, str] | None = None
) -> FunctionSettings:
    """The settings of the function with logical id `function`, its values resolved with `resolve`."""
    defaults = template.get("Globals", {}).get("Function", {})
    resource = template["Resources"].get(function)
    if resource is None or resource.get("Type") != "AWS::Serverless::Function":
        raise ValueError(f"the template has no AWS::Serverless::Function {function!r}")
    properties = resource["Properties"]
    variables = {
        **defaults.get("Environment", {}).get("Variables", {}),
        **properties.get("Environment", {}).get("Variables", {}),
    }

    def setting(name: str, default: Any) -> Any:
        return resolve(properties.get(name, defaults.get(name, default)), template, physical_names)

    def variable(name: str, value: Any) -> str:
        try:
            return str(resolve(value, template, physical_names))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    return FunctionSettings(
        environment={name: variable(name, value) for name, value in variables.items()},
        timeout_seconds=float(setting("Timeout", DEFAULT_TIMEOUT_SECONDS)),
        memory_mb=int(setting("MemorySize", DEFAULT_MEMORY_MB)),
        handler=str(setting("Handler", "")),
        code_uri=str(setting("CodeUri", ".")),
    )
