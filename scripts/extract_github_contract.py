"""Write the part of GitHub's published API descriptions that trunkline's tests use.

GitHub's full descriptions (`../shared/github`: the REST OpenAPI description, the webhook
schemas and example payloads, copied unchanged from @octokit packages, MIT licensed) are 22 MB.
This script keeps what the tests read, so the tests also run where that folder is absent (for
example on GitHub Actions): the REST operations the forge implements (the operationIds listed
in docs/forge.md) and the examples the parser tests use, the webhooks and example payloads of
the events trunkline handles or the forge sends, and every component they reference.

Usage: python scripts/extract_github_contract.py [SOURCE_DIR] [TARGET_DIR]
(defaults: ../shared/github and tests/data/github). tests/unit/test_github_contract_extract.py
checks that the committed extract is what this script makes from the full descriptions.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = (
    "check_run",
    "check_suite",
    "installation",
    "installation_repositories",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "status",
)
# Component examples the REST parser tests read by name.
EXAMPLES = (
    "check-run-paginated",
    "combined-commit-status",
    "content-file",
    "diff-entry-items",
    "git-ref",
    "issue",
    "issue-comment-items",
    "pull-request",
    "pull-request-merge-result-response-if-merge-was-successful",
    "pull-request-review-items",
    "repository-collaborator-permission-response-if-user-has-admin-permissions",
)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def forge_operation_ids(doc: Path) -> set[str]:
    """The operationIds in the table of implemented operations of docs/forge.md."""
    text = doc.read_text(encoding="utf-8").split("| operationId | route |", 1)[1]
    return set(re.findall(r"^\| `([a-z0-9/_-]+)` \|", text, flags=re.MULTILINE))


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _with_components(document: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """`kept` plus every component it references, transitively."""
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    _refs(kept, pending)
    done: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in done or not ref.startswith("#/components/"):
            continue
        done.add(ref)
        _, _, kind, name = ref.split("/", 3)
        value = document["components"][kind][name]
        components.setdefault(kind, {})[name] = value
        _refs(value, pending)
    return {**kept, "components": {k: dict(sorted(v.items())) for k, v in components.items()}}


def extract_rest(document: dict[str, Any], operation_ids: set[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        operations = {
            method: operation
            for method, operation in item.items()
            if method in METHODS and operation.get("operationId") in operation_ids
        }
        if operations:
            shared = {k: v for k, v in item.items() if k not in METHODS}
            paths[path] = {**shared, **operations}
    missing = operation_ids - {
        op["operationId"] for item in paths.values() for m, op in item.items() if m in METHODS
    }
    if missing:
        raise SystemExit(f"operations not in the description: {sorted(missing)}")
    kept: dict[str, Any] = {
        "openapi": document["openapi"],
        "info": document["info"],
        "paths": paths,
        "x-examples": sorted(EXAMPLES),
    }
    extracted = _with_components(document, kept)
    examples = extracted["components"].setdefault("examples", {})
    for name in EXAMPLES:
        examples[name] = document["components"]["examples"][name]
    extracted["components"]["examples"] = dict(sorted(examples.items()))
    del extracted["x-examples"]
    return extracted


def extract_webhooks(document: dict[str, Any]) -> dict[str, Any]:
    prefixes = tuple(event.replace("_", "-") for event in EVENTS)
    webhooks = {
        name: value
        for name, value in document["webhooks"].items()
        if any(name == prefix or name.startswith(prefix + "-") for prefix in prefixes)
    }
    kept = {"openapi": document["openapi"], "info": document["info"], "webhooks": webhooks}
    return _with_components(document, kept)


def extract_examples(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in examples if entry["name"] in EVENTS]


def build(source: Path) -> dict[str, Any]:
    """The three extracted documents, by file name."""
    rest = json.loads((source / "rest-api.json").read_text(encoding="utf-8"))
    hooks = json.loads((source / "webhooks-api.json").read_text(encoding="utf-8"))
    examples = json.loads((source / "webhook-examples.json").read_text(encoding="utf-8"))
    return {
        "rest-api.json": extract_rest(rest, forge_operation_ids(ROOT / "docs" / "forge.md")),
        "webhooks-api.json": extract_webhooks(hooks),
        "webhook-examples.json": extract_examples(examples),
    }


def render(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "github"
    target = Path(argv[2]) if len(argv) > 2 else ROOT / "tests" / "data" / "github"
    target.mkdir(parents=True, exist_ok=True)
    for name, document in build(source).items():
        (target / name).write_text(render(document), encoding="utf-8")
        print(f"{target / name}: {(target / name).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
