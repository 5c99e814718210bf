"""The webhook models agree with GitHub's published webhook schemas for every field they use.

For each modelled event and each of its actions in webhooks-api.json: every model field exists
in the schema (in every variant), has a compatible JSON type, is optional in the model when
GitHub may omit it, and accepts None when GitHub may send null.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prerequisites import require_shared_github
from pydantic import BaseModel

from trunkline.bot.events import EVENT_MODELS

JSON_TYPES = {
    str: {"string"},
    int: {"integer"},
    bool: {"boolean"},
    float: {"number", "integer"},
    datetime: {"string"},  # GitHub's ISO 8601 timestamps
}


@cache
def _document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _variants(root: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may take (anyOf/oneOf expanded, allOf merged)."""
    schema = _resolve(root, schema)
    if "allOf" in schema:
        return [_merge_all_of(root, schema["allOf"])]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            found: list[dict[str, Any]] = []
            for part in schema[key]:
                found.extend(_variants(root, part))
            return found
    return [schema]


def _merge_all_of(root: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """allOf: a value must satisfy every part (properties combine, types intersect)."""
    merged: dict[str, Any] = {"properties": {}, "required": []}
    type_sets: list[set[str]] = []
    items: list[dict[str, Any]] = []
    for part in parts:
        for variant in _variants(root, part):
            for name, prop in variant.get("properties", {}).items():
                previous = merged["properties"].get(name)
                merged["properties"][name] = (
                    prop if previous is None else {"allOf": [previous, prop]}
                )
            merged["required"] += variant.get("required", [])
            if "type" in variant or "enum" in variant:
                type_sets.append(_types(variant))
            if "items" in variant:
                items.append(variant["items"])
    if type_sets:
        merged["type"] = sorted(set.intersection(*type_sets))
    if items:
        merged["items"] = {"allOf": items}
    return merged


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if declared is None:
        if "enum" in schema:
            return {"null" if value is None else "string" for value in schema["enum"]}
        return {"any"}
    return {declared} if isinstance(declared, str) else set(declared)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        assert len(rest) == 1, annotation
        return rest[0], True
    return annotation, False


def _check_value(
    root: dict[str, Any], annotation: Any, schema: dict[str, Any], where: str
) -> list[str]:
    problems: list[str] = []
    inner, nullable = _strip_optional(annotation)
    variants = _variants(root, schema)
    allowed = set().union(*(_types(variant) for variant in variants))
    if "null" in allowed and not nullable:
        problems.append(f"{where}: GitHub may send null, the model does not accept None")
    allowed.discard("null")
    if "any" in allowed:
        return problems
    origin = typing.get_origin(inner)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        if "object" not in allowed:
            problems.append(f"{where}: model expects an object, GitHub sends {allowed}")
        objects = [variant for variant in variants if "object" in _types(variant)]
        problems += _check_model(root, inner, objects, where)
    elif origin is list:
        if "array" not in allowed:
            problems.append(f"{where}: model expects an array, GitHub sends {allowed}")
        (item,) = typing.get_args(inner)
        for variant in variants:
            if "items" in variant:
                problems += _check_value(root, item, variant["items"], f"{where}[]")
    elif origin is dict:
        if "object" not in allowed:
            problems.append(f"{where}: model expects an object, GitHub sends {allowed}")
    else:
        expected = JSON_TYPES[inner]
        if not allowed <= expected:
            problems.append(f"{where}: model expects {expected}, GitHub sends {allowed}")
    return problems


def _check_model(
    root: dict[str, Any],
    model: type[BaseModel],
    variants: list[dict[str, Any]],
    where: str,
) -> list[str]:
    problems: list[str] = []
    hints = typing.get_type_hints(model)
    for name, field in model.model_fields.items():
        for variant in variants:
            properties = variant.get("properties", {})
            if name not in properties:
                # An optional field may be absent from some actions' payloads.
                if field.is_required():
                    problems.append(f"{where}.{name}: not in GitHub's schema")
                continue
            if field.is_required() and name not in variant.get("required", []):
                problems.append(f"{where}.{name}: required in the model, optional at GitHub")
            problems += _check_value(root, hints[name], properties[name], f"{where}.{name}")
    return problems


def _webhook_schemas(root: dict[str, Any], event: str) -> dict[str, dict[str, Any]]:
    prefix = event.replace("_", "-")
    found = {}
    for key, entry in root["webhooks"].items():
        operation = entry["post"]
        if operation["operationId"].split("/")[0] == prefix:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            found[key] = schema
    return found


@pytest.mark.parametrize("event", sorted(EVENT_MODELS))
def test_model_fields_exist_with_compatible_types_in_githubs_schemas(event: str) -> None:
    root = _document(require_shared_github() / "webhooks-api.json")
    schemas = _webhook_schemas(root, event)
    assert schemas, f"no webhook schemas for {event}"
    model = EVENT_MODELS[event]
    problems: list[str] = []
    for key, schema in sorted(schemas.items()):
        problems += _check_model(root, model, _variants(root, schema), key)
    for name in model.model_fields:
        if not any(_has_property(root, schema, name) for schema in schemas.values()):
            problems.append(f"{event}.{name}: in no schema of the event")
    assert not problems, "\n".join(problems)


def _has_property(root: dict[str, Any], schema: dict[str, Any], name: str) -> bool:
    return any(name in variant.get("properties", {}) for variant in _variants(root, schema))


def test_the_checker_notices_a_wrong_model() -> None:
    root = _document(require_shared_github() / "webhooks-api.json")

    class WrongStatus(BaseModel):
        sha: int  # a string at GitHub
        description: str  # nullable at GitHub
        no_such_field: str

    schema = _webhook_schemas(root, "status")["status"]
    problems = _check_model(root, WrongStatus, _variants(root, schema), "status")
    assert any("sha" in problem and "expects" in problem for problem in problems)
    assert any("description" in problem and "null" in problem for problem in problems)
    assert any("no_such_field" in problem for problem in problems)


def test_every_optional_field_is_known_to_some_action() -> None:
    root = _document(require_shared_github() / "webhooks-api.json")
    schemas = _webhook_schemas(root, "pull_request")
    assert any(_has_property(root, schema, "label") for schema in schemas.values())
    assert not any(_has_property(root, schema, "no_such_field") for schema in schemas.values())
