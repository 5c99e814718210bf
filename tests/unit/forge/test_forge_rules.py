"""Pure rules of the forge: permissions, JWT checks, status/suite aggregation, CI choice."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.forge import auth
from trunkline.forge import models as m
from trunkline.forge.ci import branch_matches, flaked
from trunkline.forge.conformance import WebhookContract, _fix_nullable
from trunkline.forge.render_code import combined_state, suite_status
from trunkline.forge.state import ForgeState
from trunkline.forge.webhooks import sign

KEY, PUBLIC = auth.generate_key_pair()


@pytest.mark.parametrize(
    ("name", "level", "legacy"),
    [
        ("read", m.Permission.READ, "read"),
        ("pull", m.Permission.READ, "read"),
        ("triage", m.Permission.TRIAGE, "read"),
        ("write", m.Permission.WRITE, "write"),
        ("push", m.Permission.WRITE, "write"),
        ("maintain", m.Permission.MAINTAIN, "write"),
        ("admin", m.Permission.ADMIN, "admin"),
    ],
)
def test_permission_names(name: str, level: m.Permission, legacy: str) -> None:
    assert m.Permission.parse(name) is level
    assert level.legacy_name == legacy


def test_unknown_permission_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        m.Permission.parse("owner")


def world(tmp_path: Path) -> tuple[ForgeState, m.Repo, m.App, m.Installation]:
    state = ForgeState(tmp_path)
    for uid, login in [(1, "alice"), (2, "bob"), (3, "app[bot]")]:
        state.users[uid] = m.User(id=uid, login=login)
    repo = m.Repo(id=10, owner_id=1, name="demo", created_at=0, updated_at=0, pushed_at=0)
    repo.private = True
    repo.permissions = {"2": int(m.Permission.WRITE)}
    repo.protected_branches = ["main"]
    state.repos[repo.id] = repo
    app = m.App(
        id=20, slug="app", name="app", owner_id=1, bot_user_id=3, public_key_pem=PUBLIC,
        created_at=0,
    )  # fmt: skip
    state.apps[app.id] = app
    inst = m.Installation(id=30, app_id=20, account_id=1, repository_ids=[10])
    state.installations[inst.id] = inst
    return state, repo, app, inst


def token(claims: dict[str, object], key: str = KEY) -> str:
    return jwt.encode(claims, key, algorithm="RS256")


@pytest.mark.parametrize(
    ("iat", "exp", "ok"),
    [
        (-30, 540, True),
        (0, 600, True),
        (-30, 3600, False),  # longer than ten minutes
        (-700, -10, False),  # expired
        (300, 800, False),  # issued in the future
    ],
)
def test_app_jwt_lifetime_rules(tmp_path: Path, iat: int, exp: int, ok: bool) -> None:
    state, _, app, _ = world(tmp_path)
    now = time.time()
    raw = token({"iat": int(now + iat), "exp": int(now + exp), "iss": str(app.id)})
    if ok:
        assert auth.verify_app_jwt(state, raw, now) is app
    else:
        with pytest.raises(auth.AuthError):
            auth.verify_app_jwt(state, raw, now)


def test_a_jwt_from_another_key_or_app_is_refused(tmp_path: Path) -> None:
    state, _, app, _ = world(tmp_path)
    now = time.time()
    other, _ = auth.generate_key_pair()
    claims = {"iat": int(now - 30), "exp": int(now + 500), "iss": str(app.id)}
    with pytest.raises(auth.AuthError):
        auth.verify_app_jwt(state, token(claims, other), now)
    with pytest.raises(auth.AuthError):
        auth.verify_app_jwt(state, token({**claims, "iss": "999"}), now)


def test_installation_tokens_and_permissions(tmp_path: Path) -> None:
    state, repo, _, inst = world(tmp_path)
    issued = auth.issue_installation_token(state, inst, now=1000.0)
    principal = auth.principal_for_token(state, issued.token, now=1000.0 + 3599)
    assert principal.user is not None
    assert principal.user.login == "app[bot]"
    assert auth.repo_permission(state, principal, repo) is m.Permission.WRITE
    assert auth.may_update_protected(state, principal, repo)
    with pytest.raises(auth.AuthError):
        auth.principal_for_token(state, issued.token, now=1000.0 + 3600)
    bob = auth.Principal(user=state.users[2])
    assert auth.repo_permission(state, bob, repo) is m.Permission.WRITE
    assert not auth.may_update_protected(state, bob, repo)
    alice = auth.Principal(user=state.users[1])
    assert not auth.may_update_protected(state, alice, repo)
    repo.admins_may_push_protected = True
    assert auth.may_update_protected(state, alice, repo)
    assert auth.repo_permission(state, None, repo) is m.Permission.NONE
    repo.private = False
    assert auth.repo_permission(state, None, repo) is m.Permission.READ


@pytest.mark.parametrize(
    ("states", "combined"),
    [
        ([], "pending"),
        (["success"], "success"),
        (["success", "pending"], "pending"),
        (["success", "error"], "failure"),
        (["failure", "pending"], "failure"),
    ],
)
def test_combined_status(states: list[str], combined: str) -> None:
    assert combined_state(states) == combined


def run(status: str, conclusion: str | None = None) -> m.CheckRun:
    return m.CheckRun(
        id=1, repo_id=1, suite_id=1, app_id=1, head_sha="x", name="n", status=status,
        started_at=0, conclusion=conclusion,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], ("queued", None)),
        ([run("queued"), run("in_progress")], ("in_progress", None)),
        ([run("completed", "success"), run("completed", "skipped")], ("completed", "success")),
        ([run("completed", "success"), run("completed", "failure")], ("completed", "failure")),
    ],
)
def test_suite_status(runs: list[m.CheckRun], expected: tuple[str, str | None]) -> None:
    assert suite_status(runs) == expected


@pytest.mark.parametrize(
    ("patterns", "branch", "matches"),
    [(["*"], "main", True), (["agent/*"], "agent/x", True), (["main"], "feature", False)],
)
def test_ci_branch_patterns(patterns: list[str], branch: str, matches: bool) -> None:
    assert branch_matches(m.CiConfig(branches=patterns), branch) is matches


@given(st.integers(min_value=0, max_value=10**6), st.text(min_size=1, max_size=40))
def test_flake_injection_is_deterministic(seed: int, sha: str) -> None:
    config = m.CiConfig(flake_probability=0.5, seed=seed)
    assert flaked(config, sha) == flaked(config, sha)
    assert not flaked(m.CiConfig(flake_probability=0.0, seed=seed), sha)
    assert flaked(m.CiConfig(flake_probability=1.0, seed=seed), sha)


@given(st.binary(max_size=200))
def test_signature_depends_on_secret_and_body(body: bytes) -> None:
    assert sign("s", body).startswith("sha256=")
    assert sign("s", body) != sign("t", body)
    assert sign("s", body) != sign("s", body + b"x")


def test_nullable_becomes_a_null_type() -> None:
    fixed = _fix_nullable({"type": "string", "nullable": True, "enum": ["a"]})
    assert fixed == {"type": ["string", "null"], "enum": ["a", None]}
    wrapped = _fix_nullable({"nullable": True, "allOf": [{"type": "object"}]})
    assert wrapped == {"anyOf": [{"allOf": [{"type": "object"}]}, {"type": "null"}]}


def test_webhook_schema_keys() -> None:
    assert WebhookContract.key("pull_request_review", "submitted") == (
        "pull-request-review-submitted"
    )
    assert WebhookContract.key("push", None) == "push"


def test_a_jwt_may_follow_the_forge_clock_or_the_wall_clock(tmp_path: Path) -> None:
    state, _, app, _ = world(tmp_path)
    wall = time.time()
    forge_now = wall + 7200
    claims = {"iss": str(app.id)}
    on_forge = token({**claims, "iat": int(forge_now - 30), "exp": int(forge_now + 500)})
    on_wall = token({**claims, "iat": int(wall - 30), "exp": int(wall + 500)})
    stale = token({**claims, "iat": int(wall - 3000), "exp": int(wall - 2500)})
    assert auth.verify_app_jwt(state, on_forge, forge_now, wall) is app
    assert auth.verify_app_jwt(state, on_wall, forge_now, wall) is app
    with pytest.raises(auth.AuthError):
        auth.verify_app_jwt(state, stale, forge_now, wall)
