"""app.yml asks for exactly the permissions and webhook events trunkline uses.

Derived from the code, not restated:
- **REST operations**: every method of the `GitHubPort` protocol is mapped below to the REST
  operation(s) the adapter sends (operationIds checked against GitHub's published REST
  description) and the App permission GitHub's "Permissions required for GitHub Apps"
  lists for it. The port methods the product calls are found by scanning `trunkline/`
  (outside the port's own implementations) for calls by name.
- **git over HTTPS** (the workspace's mirrors and pushes, with installation tokens): the
  workspace calls the product makes, mapped to `contents`.
- **Webhook events**: the events the production composition (`configure_bot` with the App
  and an agent provider configured) registers handlers for; the permission each needs is read
  from GitHub's webhook descriptions ("To subscribe to this event, a GitHub App must have at
  least read-level access for the "X" ... permission").

The manifest must list those events exactly and grant, per permission, the highest level
any use needs: nothing missing, nothing more.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prerequisites import REPO_ROOT, require_shared_github

from trunkline.bot.service import build_service
from trunkline.bot.wiring import configure_bot
from trunkline.github.port import GitHubPort
from trunkline.settings import Settings
from trunkline.store.testing import migrated_engine

READ, WRITE = "read", "write"
LEVELS = {READ: 1, WRITE: 2}

# GitHubPort method -> (REST operationIds it sends, (permission, level)). A composite method
# (upsert_sticky_comment) names the port methods it is made of instead.
PORT_OPERATIONS: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    "get_issue": (("issues/get",), ("issues", READ)),
    "list_issues": (("issues/list-for-repo",), ("issues", READ)),
    "list_issue_events": (("issues/list-events",), ("issues", READ)),
    "get_pull": (("pulls/get",), ("pull_requests", READ)),
    "list_pull_files": (("pulls/list-files",), ("pull_requests", READ)),
    "list_reviews": (("pulls/list-reviews",), ("pull_requests", READ)),
    "find_open_pull": (("pulls/list",), ("pull_requests", READ)),
    "list_review_comments": (("pulls/list-review-comments",), ("pull_requests", READ)),
    "list_pull_commits": (("pulls/list-commits",), ("pull_requests", READ)),
    "compare_commits": (("repos/compare-commits-with-basehead",), ("contents", READ)),
    "list_check_runs": (("checks/list-for-ref",), ("checks", READ)),
    "get_combined_status": (("repos/get-combined-status-for-ref",), ("statuses", READ)),
    "get_permission": (("repos/get-collaborator-permission-level",), ("metadata", READ)),
    "get_file": (("repos/get-content",), ("contents", READ)),
    "list_issue_comments": (("issues/list-comments",), ("issues", READ)),
    "get_ref": (("git/get-ref",), ("contents", READ)),
    "add_labels": (("issues/add-labels",), ("issues", WRITE)),
    "remove_label": (("issues/remove-label",), ("issues", WRITE)),
    "create_comment": (("issues/create-comment",), ("issues", WRITE)),
    "edit_comment": (("issues/update-comment",), ("issues", WRITE)),
    "create_check_run": (("checks/create",), ("checks", WRITE)),
    "update_check_run": (("checks/update",), ("checks", WRITE)),
    "rerequest_check_run": (("checks/rerequest-run",), ("checks", WRITE)),
    "create_ref": (("git/create-ref",), ("contents", WRITE)),
    "update_ref": (("git/update-ref",), ("contents", WRITE)),
    "delete_ref": (("git/delete-ref",), ("contents", WRITE)),
    "create_pull": (("pulls/create",), ("pull_requests", WRITE)),
    "merge_pull": (("pulls/merge",), ("contents", WRITE)),
    "create_review": (("pulls/create-review",), ("pull_requests", WRITE)),
    "close_issue": (("issues/update",), ("issues", WRITE)),
    "close_pull": (("pulls/update",), ("pull_requests", WRITE)),
}
COMPOSITE = {"upsert_sticky_comment": ("list_issue_comments", "create_comment", "edit_comment")}
# Port methods that make no request (`as_written`: the text GitHub holds after a write).
LOCAL = frozenset({"as_written"})
# Workspace calls that talk git over HTTPS with the installation token.
GIT_OPERATIONS = {
    "ensure_mirror": ("contents", READ),
    "fetch": ("contents", READ),
    "push_branch": ("contents", WRITE),
    "push_commit": ("contents", WRITE),
}
# The port's implementations (and the forge, which implements GitHub) call nothing "as a user".
NOT_CALLERS = ("trunkline/github/", "trunkline/forge/")
# Sent to every App installation without a subscription; a manifest cannot list them.
ALWAYS_DELIVERED = {"installation", "installation_repositories", "ping"}
# GitHub's display names of repository permissions -> manifest keys.
PERMISSION_KEYS = {
    "Checks": "checks",
    "Commit statuses": "statuses",
    "Contents": "contents",
    "Issues": "issues",
    "Merge queues": "merge_queues",
    "Metadata": "metadata",
    "Pull requests": "pull_requests",
}


def _manifest() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO_ROOT / "app.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _product_sources() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted((REPO_ROOT / "trunkline").rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith(NOT_CALLERS) or path.name in ("testing.py", "fake.py"):
            continue
        yield relative, ast.parse(path.read_text(encoding="utf-8"))


def _called_names(exclude: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for relative, tree in _product_sources():
        if relative.startswith(exclude):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
    return names


def _port_methods() -> set[str]:
    return {
        name
        for name, value in vars(GitHubPort).items()
        if callable(value) and not name.startswith("_")
    }


def _used_port_methods() -> set[str]:
    used = _called_names() & _port_methods()
    for composite, parts in COMPOSITE.items():
        if composite in used:
            used |= set(parts)
    return used - set(COMPOSITE)


def _registered_events(tmp_path: Path) -> set[str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "app.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    migrated_engine(url).dispose()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        github_app_id="1",
        github_private_key_path=key_path,
        anthropic_api_key="unused",
    )
    service = build_service(settings, configure=configure_bot)
    try:
        return service.router.registered_events()
    finally:
        service.engine.dispose()


def _event_permissions(webhooks: dict[str, Any], event: str) -> set[str]:
    """The permission keys GitHub's webhook descriptions name for subscribing to `event`."""
    prefix = event.replace("_", "-")
    summaries = [
        operation["post"]["summary"]
        for name, operation in webhooks.items()
        if name == prefix or name.startswith(prefix + "-")
    ]
    assert summaries, f"GitHub's webhook descriptions have no {event!r} event"
    found: set[str] = set()
    for summary in summaries:
        for sentence in re.findall(r"To subscribe to this event[^.]*\.", summary):
            names = re.findall(r'"([A-Za-z ]+)"', sentence)
            assert len(names) == 1, f"{event}: one permission expected in {sentence!r}"
            found.add(PERMISSION_KEYS[names[0]])
    return found


def _merge(needed: dict[str, str], permission: str, level: str) -> None:
    if LEVELS[level] > LEVELS.get(needed.get(permission, ""), 0):
        needed[permission] = level


@pytest.fixture(scope="module")
def github_descriptions() -> Path:
    return require_shared_github()


def test_deploy_every_port_method_is_mapped_to_documented_operations(
    github_descriptions: Path,
) -> None:
    assert set(PORT_OPERATIONS) | set(COMPOSITE) | LOCAL == _port_methods()
    rest = json.loads((github_descriptions / "rest-api.json").read_text(encoding="utf-8"))
    documented = {
        operation.get("operationId")
        for item in rest["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    }
    for method, (operation_ids, _) in PORT_OPERATIONS.items():
        missing = set(operation_ids) - documented
        assert not missing, f"{method}: {sorted(missing)} not in GitHub's REST description"
    permissions = rest["components"]["schemas"]["app-permissions"]["properties"]
    for _, (permission, _level) in PORT_OPERATIONS.values():
        assert permission in permissions


def test_deploy_manifest_permissions_are_exactly_those_used(
    github_descriptions: Path, tmp_path: Path
) -> None:
    needed: dict[str, str] = {}
    used = _used_port_methods()
    assert {"get_permission", "upsert_sticky_comment"} <= _called_names()  # the scan sees calls
    for method in used - LOCAL:
        _merge(needed, *PORT_OPERATIONS[method][1])
    git_calls = _called_names(exclude=("trunkline/workspace/",)) & set(GIT_OPERATIONS)
    assert "push_commit" in git_calls or "push_branch" in git_calls
    for call in git_calls:
        _merge(needed, *GIT_OPERATIONS[call])
    hooks = json.loads((github_descriptions / "webhooks-api.json").read_text(encoding="utf-8"))
    for event in _registered_events(tmp_path) - ALWAYS_DELIVERED:
        for permission in _event_permissions(hooks["webhooks"], event):
            _merge(needed, permission, READ)

    manifest = _manifest()
    assert manifest["default_permissions"] == needed


def test_deploy_manifest_events_are_exactly_those_handled(tmp_path: Path) -> None:
    registered = _registered_events(tmp_path)
    assert {"issues", "pull_request"} <= registered
    manifest = _manifest()
    events = manifest["default_events"]
    assert len(events) == len(set(events))
    assert set(events) == registered - ALWAYS_DELIVERED


def test_deploy_manifest_has_what_the_manifest_flow_needs() -> None:
    manifest = _manifest()
    assert manifest["name"]
    assert manifest["hook_attributes"]["url"].endswith("/webhooks")  # the bot's intake route
    assert manifest["hook_attributes"]["active"] is True
    assert manifest["public"] is False
    assert set(manifest) <= {
        "name",
        "url",
        "description",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "public",
        "default_permissions",
        "default_events",
        "request_oauth_on_install",
        "setup_on_update",
    }
