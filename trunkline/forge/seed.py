"""Seeding: users, the App and its installation, repositories (from directories), labels,
issues, collaborators, protected branches and simulated CI, from a YAML spec or Python.

Performs I/O (git, files under the data directory). `load_spec(path)` validates a YAML file
(`extra="forbid"`: a typo is an error, not a silent default); `apply_seed(forge, spec,
base_dir)` creates everything and returns a `SeedResult` (also written to
DATA/seed-result.json): the App id, its private key path (DATA/app-private-key.pem), the
installation id, each user's personal token, and the repositories' clone URLs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from trunkline.errors import ConfigurationError
from trunkline.forge import auth, gitrepo
from trunkline.forge import models as m
from trunkline.forge.runtime import Forge


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserSpec(_Strict):
    login: str
    name: str | None = None
    email: str | None = None
    type: str = "User"


class LabelSpec(_Strict):
    name: str
    color: str = "ededed"
    description: str | None = None


class IssueSpec(_Strict):
    title: str
    body: str | None = None
    author: str | None = None
    labels: list[str] = Field(default_factory=list)
    assignees: list[str] = Field(default_factory=list)


class CiSpec(_Strict):
    command: str = "python -m pytest -q"
    branches: list[str] = Field(default_factory=lambda: ["*"])
    check_name: str = "ci"
    duration_seconds: float = 0.0
    force_failure: bool = False
    flake_probability: float = 0.0
    seed: int = 0
    timeout_seconds: float = 600.0


class RepoSpec(_Strict):
    owner: str
    name: str
    source: str | None = None  # a directory; its files become the initial commit
    description: str | None = None
    private: bool = False
    default_branch: str = "main"
    protected_branches: list[str] = Field(default_factory=list)
    admins_may_push_protected: bool = False
    collaborators: dict[str, str] = Field(default_factory=dict)  # login -> role
    labels: list[LabelSpec] = Field(default_factory=list)
    issues: list[IssueSpec] = Field(default_factory=list)
    ci: CiSpec | None = None


class AppSpec(_Strict):
    name: str = "trunkline"
    slug: str = "trunkline"
    owner: str
    webhook_url: str | None = None
    webhook_secret: str | None = None


class InstallationSpec(_Strict):
    account: str
    repositories: list[str] | None = None  # names under the account; None: all of its repos


class SeedSpec(_Strict):
    users: list[UserSpec] = Field(default_factory=list)
    app: AppSpec | None = None
    repositories: list[RepoSpec] = Field(default_factory=list)
    installation: InstallationSpec | None = None


@dataclass
class SeedResult:
    app_id: int | None = None
    app_slug: str | None = None
    private_key_path: str | None = None
    installation_id: int | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    repositories: dict[str, str] = field(default_factory=dict)  # full name -> git path

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_spec(path: Path) -> SeedSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return SeedSpec.model_validate(raw)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigurationError(f"bad forge seed spec {path}: {exc}") from exc


def apply_seed(forge: Forge, spec: SeedSpec, base_dir: Path | None = None) -> SeedResult:
    state = forge.state
    result = SeedResult()
    now = state.now()
    with state.lock:
        for u in spec.users:
            user = state.user_by_login(u.login)
            if user is None:
                user = m.User(
                    id=state.new_id(),
                    login=u.login,
                    type=u.type,
                    name=u.name,
                    email=u.email or f"{u.login}@forge.localhost",
                    created_at=now,
                )
                state.users[user.id] = user
            result.tokens[u.login] = auth.issue_personal_token(state, user).token
    app = _seed_app(forge, spec.app, result) if spec.app is not None else None
    for repo_spec in spec.repositories:
        repo = _seed_repo(forge, repo_spec, base_dir or Path.cwd())
        result.repositories[state.repo_full_name(repo)] = str(state.repo_git_path(repo))
    if spec.installation is not None:
        if app is None:
            raise ConfigurationError("an installation needs an app in the seed spec")
        inst = _seed_installation(forge, app, spec.installation)
        result.installation_id = inst.id
    state.save()
    (state.data_dir / "seed-result.json").write_text(result.to_json(), encoding="utf-8")
    return result


def _user(forge: Forge, login: str) -> m.User:
    user = forge.state.user_by_login(login)
    if user is None:
        raise ConfigurationError(f"seed spec names unknown user {login!r}; list it under users")
    return user


def _seed_app(forge: Forge, spec: AppSpec, result: SeedResult) -> m.App:
    state = forge.state
    key_path = state.data_dir / "app-private-key.pem"
    with state.lock:
        owner = _user(forge, spec.owner)
        app = next((a for a in state.apps.values() if a.slug == spec.slug), None)
        if app is None:
            private, public = auth.generate_key_pair()
            key_path.write_text(private, encoding="utf-8")
            key_path.chmod(0o600)
            now = state.now()
            bot = m.User(id=state.new_id(), login=f"{spec.slug}[bot]", type="Bot", created_at=now)
            state.users[bot.id] = bot
            app = m.App(
                id=state.new_id(),
                slug=spec.slug,
                name=spec.name,
                owner_id=owner.id,
                bot_user_id=bot.id,
                public_key_pem=public,
                created_at=now,
            )
            state.apps[app.id] = app
        app.webhook_url = spec.webhook_url or app.webhook_url
        app.webhook_secret = spec.webhook_secret or app.webhook_secret
    result.app_id, result.app_slug, result.private_key_path = app.id, app.slug, str(key_path)
    return app


def _seed_repo(forge: Forge, spec: RepoSpec, base_dir: Path) -> m.Repo:
    state = forge.state
    with state.lock:
        owner = _user(forge, spec.owner)
        repo = state.repo_by_name(spec.owner, spec.name)
        created = repo is None
        if repo is None:
            now = state.now()
            repo = m.Repo(
                id=state.new_id(),
                owner_id=owner.id,
                name=spec.name,
                created_at=now,
                updated_at=now,
                pushed_at=now,
            )
            state.repos[repo.id] = repo
        repo.description = spec.description
        repo.private = spec.private
        repo.default_branch = spec.default_branch
        repo.protected_branches = list(spec.protected_branches)
        repo.admins_may_push_protected = spec.admins_may_push_protected
        repo.ci = spec.ci.model_dump() if spec.ci is not None else None
        for login, role in spec.collaborators.items():
            try:
                repo.permissions[str(_user(forge, login).id)] = int(m.Permission.parse(role))
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc
        for lab in spec.labels:
            if state.label_by_name(repo, lab.name) is None:
                label = m.Label(
                    id=state.new_id(),
                    repo_id=repo.id,
                    name=lab.name,
                    color=lab.color.lstrip("#"),
                    description=lab.description,
                )
                state.labels[label.id] = label
    if created:
        bare = state.repo_git_path(repo)
        gitrepo.init_bare(bare, spec.default_branch)
        source = (base_dir / spec.source).resolve() if spec.source else None
        if source is not None and not source.is_dir():
            raise ConfigurationError(f"repository source {source} is not a directory")
        gitrepo.import_directory(bare, source, spec.default_branch, "Initial commit")
        with state.lock:
            repo.refs = gitrepo.list_refs(bare)
    for issue_spec in spec.issues:
        _seed_issue(forge, repo, issue_spec)
    return repo


def _seed_issue(forge: Forge, repo: m.Repo, spec: IssueSpec) -> None:
    state = forge.state
    now = state.now()
    with state.lock:
        author = _user(forge, spec.author) if spec.author else state.users[repo.owner_id]
        for existing in state.issues.values():
            if (existing.repo_id, existing.title, existing.user_id) == (
                repo.id,
                spec.title,
                author.id,
            ):
                return  # seeding again (a restart with --seed) adds nothing twice
        labels = []
        for name in spec.labels:
            label = state.label_by_name(repo, name)
            if label is None:
                label = m.Label(id=state.new_id(), repo_id=repo.id, name=name)
                state.labels[label.id] = label
            labels.append(label.id)
        issue = m.Issue(
            id=state.new_id(),
            repo_id=repo.id,
            number=repo.next_number,
            title=spec.title,
            user_id=author.id,
            created_at=now,
            updated_at=now,
            body=spec.body,
            label_ids=labels,
            assignee_ids=[_user(forge, a).id for a in spec.assignees],
        )
        repo.next_number += 1
        state.issues[issue.id] = issue


def _seed_installation(forge: Forge, app: m.App, spec: InstallationSpec) -> m.Installation:
    state = forge.state
    with state.lock:
        account = _user(forge, spec.account)
        owned = [r for r in state.repos.values() if r.owner_id == account.id]
        if spec.repositories is not None:
            names = {n.lower() for n in spec.repositories}
            owned = [r for r in owned if r.name.lower() in names]
        inst = next(
            (
                i
                for i in state.installations.values()
                if i.app_id == app.id and i.account_id == account.id
            ),
            None,
        )
        if inst is None:
            inst = m.Installation(
                id=state.new_id(), app_id=app.id, account_id=account.id, created_at=state.now()
            )
            state.installations[inst.id] = inst
        inst.repository_ids = sorted({*inst.repository_ids, *(r.id for r in owned)})
    _announce_installation(forge, inst)
    return inst


def _announce_installation(forge: Forge, inst: m.Installation) -> None:
    from trunkline.forge import render_core as rr

    state = forge.state
    with state.lock:
        body = rr.installation(state, forge.urls, inst)
        repos = [
            {
                "id": r.id,
                "node_id": rr.node_id("Repository", r.id),
                "name": r.name,
                "full_name": state.repo_full_name(r),
                "private": r.private,
            }
            for r in (state.repos[x] for x in inst.repository_ids)
        ]
        sender = state.users[inst.account_id]
    forge.emit(
        "installation", None, sender, action="created", installation=body, repositories=repos
    )
