"""GitHub's published contract as a checker: REST responses and webhook payloads.

Reads files only (rest-api.json / webhooks-api.json from @octokit/openapi); needs the
`jsonschema` and `referencing` packages (test extras), imported lazily. OpenAPI 3.0's
`nullable: true` is rewritten to JSON Schema's `null` type before validating.
`RestContract.operation(method, path)` finds an operation by method and concrete path (a
literal segment beats a parameter); `validate_response` checks a body against the schema
of the status code returned. `WebhookContract.validate(event, payload)` picks the schema
by event and action (e.g. `issues-labeled`). Used by the forge's tests and by other areas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_GREEDY = {"ref", "path", "basehead"}


def _fix_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_fix_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    fixed = {k: _fix_nullable(v) for k, v in node.items()}
    if fixed.pop("nullable", False) is True:
        kind = fixed.get("type")
        if isinstance(kind, str):
            fixed["type"] = [kind, "null"]
            if "enum" in fixed and None not in fixed["enum"]:
                fixed["enum"] = [*fixed["enum"], None]
        else:
            return {"anyOf": [fixed, {"type": "null"}]}
    return fixed


class ContractError(AssertionError):
    """A response or payload does not match GitHub's schema."""


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    responses: dict[str, Any]


def _validator(document: dict[str, Any], uri: str, pointer: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry: Any = Registry().with_resource(
        uri, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=registry)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _check(validator: Any, body: Any, what: str) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in errors[:15]
        ]
        raise ContractError(f"{what} does not match GitHub's schema:\n" + "\n".join(lines))


class RestContract:
    URI = "urn:github:rest-api"

    def __init__(self, path: Path) -> None:
        self.document: dict[str, Any] = _fix_nullable(json.loads(path.read_text("utf-8")))
        self._routes: list[tuple[re.Pattern[str], int, Operation]] = []
        for template, item in self.document["paths"].items():
            pattern, params = self._compile(template)
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    operation = Operation(
                        method.upper(), template, op["operationId"], op["responses"]
                    )
                    self._routes.append((pattern, params, operation))
        self._validators: dict[str, Any] = {}

    @staticmethod
    def _compile(template: str) -> tuple[re.Pattern[str], int]:
        params = 0

        def repl(match: re.Match[str]) -> str:
            nonlocal params
            params += 1
            return ".+" if match.group(1) in _GREEDY else "[^/]+"

        body = re.sub(r"\\\{([a-z_]+)\\\}", repl, re.escape(template))
        return re.compile(f"^{body}$"), params

    def operation(self, method: str, path: str) -> Operation:
        found = [
            (p, op) for rx, p, op in self._routes if op.method == method.upper() and rx.match(path)
        ]
        if not found:
            raise ContractError(f"no GitHub operation matches {method} {path}")
        found.sort(key=lambda x: (x[0], -len(x[1].template)))
        return found[0][1]

    def validate_response(self, method: str, path: str, status: int, body: Any) -> Operation:
        op = self.operation(method, path)
        response = op.responses.get(str(status))
        if response is None and status >= 400:
            # GitHub answers any operation with errors it does not list (403 for missing
            # permissions, 404, 422): those bodies are GitHub's `basic-error`.
            self._check_error(body, f"{op.operation_id} ({status})")
            return op
        if response is None:
            raise ContractError(f"{op.operation_id}: GitHub never answers {status}")
        while "$ref" in response:
            response = self.document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None and status >= 400:
            self._check_error(body, f"{op.operation_id} ({status})")
            return op
        if schema is None:
            if body not in (None, b"", ""):
                raise ContractError(f"{op.operation_id}: {status} has no body on GitHub")
            return op
        key = f"{op.template} {op.method} {status}"
        if key not in self._validators:
            pointer = _pointer("paths", op.template, op.method.lower(), "responses", str(status))
            if "$ref" in op.responses[str(status)]:
                ref = op.responses[str(status)]["$ref"].removeprefix("#")
                pointer = ref
            self._validators[key] = _validator(
                self.document, self.URI, pointer + "/content/application~1json/schema"
            )
        _check(self._validators[key], body, f"{op.operation_id} ({status})")
        return op

    def _check_error(self, body: Any, what: str) -> None:
        if "basic-error" not in self._validators:
            self._validators["basic-error"] = _validator(
                self.document, self.URI, "/components/schemas/basic-error"
            )
        _check(self._validators["basic-error"], body, what)


class WebhookContract:
    URI = "urn:github:webhooks-api"

    def __init__(self, path: Path) -> None:
        self.document: dict[str, Any] = _fix_nullable(json.loads(path.read_text("utf-8")))
        self._validators: dict[str, Any] = {}

    @staticmethod
    def key(event: str, action: str | None) -> str:
        name = event.replace("_", "-")
        return f"{name}-{action.replace('_', '-')}" if action else name

    def validate(self, event: str, payload: dict[str, Any]) -> str:
        key = self.key(event, payload.get("action"))
        if key not in self.document["webhooks"]:
            key = self.key(event, None)
        if key not in self.document["webhooks"]:
            raise ContractError(f"GitHub has no webhook {key}")
        if key not in self._validators:
            pointer = _pointer(
                "webhooks", key, "post", "requestBody", "content", "application/json", "schema"
            )
            self._validators[key] = _validator(self.document, self.URI, pointer)
        _check(self._validators[key], payload, f"webhook {key}")
        return key
