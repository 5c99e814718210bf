"""JSON bodies for users, apps, installations, repositories, labels, issues and comments.

Pure; performs no I/O. Each function turns forge records into the dict GitHub's REST API
returns for that object (URLs rooted at the forge's own address, `node_id`s, ISO 8601 `Z`
timestamps), so PyGithub parses them and they validate against GitHub's OpenAPI schemas.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trunkline.forge import models as m
from trunkline.forge.state import ForgeState

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Urls:
    """Where the forge is reachable: `api` ends in /api/v3, `web` is the site root."""

    api: str
    web: str

    @classmethod
    def from_base(cls, base: str) -> Urls:
        root = base.rstrip("/")
        return cls(api=f"{root}/api/v3", web=root)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_required(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, ident: int | str) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


def user(urls: Urls, u: m.User) -> JsonDict:
    api = f"{urls.api}/users/{u.login}"
    return {
        "login": u.login,
        "id": u.id,
        "node_id": node_id("User", u.id),
        "avatar_url": f"{urls.web}/avatars/{u.login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.web}/{u.login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": u.type,
        "site_admin": u.site_admin,
    }


def user_by_id(state: ForgeState, urls: Urls, user_id: int | None) -> JsonDict | None:
    if user_id is None or user_id not in state.users:
        return None
    return user(urls, state.users[user_id])


def full_user(state: ForgeState, urls: Urls, u: m.User) -> JsonDict:
    body = user(urls, u)
    created = iso_required(u.created_at)
    body.update(
        name=u.name,
        company=None,
        blog="",
        location=None,
        email=u.email,
        hireable=None,
        bio=None,
        public_repos=sum(1 for r in state.repos.values() if r.owner_id == u.id),
        public_gists=0,
        followers=0,
        following=0,
        created_at=created,
        updated_at=created,
    )
    return body


APP_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}
APP_EVENTS = [
    "check_run",
    "check_suite",
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "push",
    "status",
]


def app(state: ForgeState, urls: Urls, a: m.App) -> JsonDict:
    created = iso_required(a.created_at)
    return {
        "id": a.id,
        "slug": a.slug,
        "node_id": node_id("Integration", a.id),
        "client_id": f"Iv1.{a.id:016x}",
        "owner": user(urls, state.users[a.owner_id]),
        "name": a.name,
        "description": None,
        "external_url": f"{urls.web}/apps/{a.slug}",
        "html_url": f"{urls.web}/apps/{a.slug}",
        "created_at": created,
        "updated_at": created,
        "permissions": dict(APP_PERMISSIONS),
        "events": list(APP_EVENTS),
    }


def installation(state: ForgeState, urls: Urls, inst: m.Installation) -> JsonDict:
    a = state.apps[inst.app_id]
    account = state.users[inst.account_id]
    created = iso_required(inst.created_at)
    account_body = user(urls, account)
    # GitHub's description of list-installations requires the fields of both a user and an
    # enterprise on `account` (allOf); the extra fields are harmless to clients.
    account_body.update(
        name=account.name or account.login,
        slug=account.login,
        description=None,
        website_url=None,
        created_at=iso_required(account.created_at),
        updated_at=iso_required(account.created_at),
    )
    return {
        "id": inst.id,
        "account": account_body,
        "repository_selection": "selected",
        "access_tokens_url": f"{urls.api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{urls.api}/installation/repositories",
        "html_url": f"{urls.web}/settings/installations/{inst.id}",
        "app_id": a.id,
        "app_slug": a.slug,
        "target_id": account.id,
        "target_type": "Organization" if account.type == "Organization" else "User",
        "permissions": dict(APP_PERMISSIONS),
        "events": list(APP_EVENTS),
        "created_at": created,
        "updated_at": created,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def repo(state: ForgeState, urls: Urls, r: m.Repo, viewer: m.User | None = None) -> JsonDict:
    owner = state.users[r.owner_id]
    full = f"{owner.login}/{r.name}"
    api = f"{urls.api}/repos/{full}"
    html = f"{urls.web}/{full}"
    open_issues = sum(1 for i in state.issues.values() if i.repo_id == r.id and i.state == "open")
    body: JsonDict = {
        "id": r.id,
        "node_id": node_id("Repository", r.id),
        "name": r.name,
        "full_name": full,
        "private": r.private,
        "owner": user(urls, owner),
        "html_url": html,
        "description": r.description,
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"{urls.web}/{full}.git",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"{urls.web}/{full}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{urls.web}/{full}.git",
        "mirror_url": None,
        "hooks_url": f"{api}/hooks",
        "svn_url": html,
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 0,
        "default_branch": r.default_branch,
        "open_issues_count": open_issues,
        "open_issues": open_issues,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if r.private else "public",
        "pushed_at": iso_required(r.pushed_at),
        "created_at": iso_required(r.created_at),
        "updated_at": iso_required(r.updated_at),
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "license": None,
        "network_count": 0,
        "subscribers_count": 0,
    }
    if viewer is not None:
        level = state.permission(r, viewer)
        body["permissions"] = {
            "admin": level >= m.Permission.ADMIN,
            "maintain": level >= m.Permission.MAINTAIN,
            "push": level >= m.Permission.WRITE,
            "triage": level >= m.Permission.TRIAGE,
            "pull": level >= m.Permission.READ,
        }
    return body


def repo_api(state: ForgeState, urls: Urls, r: m.Repo) -> str:
    return f"{urls.api}/repos/{state.repo_full_name(r)}"


def label(state: ForgeState, urls: Urls, lab: m.Label) -> JsonDict:
    r = state.repos[lab.repo_id]
    return {
        "id": lab.id,
        "node_id": node_id("Label", lab.id),
        "url": f"{repo_api(state, urls, r)}/labels/{lab.name}",
        "name": lab.name,
        "color": lab.color,
        "default": False,
        "description": lab.description,
    }


def author_association(state: ForgeState, r: m.Repo, user_id: int) -> str:
    if user_id == r.owner_id:
        return "OWNER"
    if state.permission(r, state.users[user_id]) >= m.Permission.READ:
        return "COLLABORATOR"
    return "NONE"


def issue(state: ForgeState, urls: Urls, i: m.Issue) -> JsonDict:
    r = state.repos[i.repo_id]
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}"
    kind = "pull" if i.is_pull else "issues"
    assignees = [user(urls, state.users[a]) for a in i.assignee_ids if a in state.users]
    body: JsonDict = {
        "id": i.id,
        "node_id": node_id("Issue", i.id),
        "url": f"{api}/issues/{i.number}",
        "repository_url": api,
        "labels_url": f"{api}/issues/{i.number}/labels{{/name}}",
        "comments_url": f"{api}/issues/{i.number}/comments",
        "events_url": f"{api}/issues/{i.number}/events",
        "html_url": f"{html}/{kind}/{i.number}",
        "number": i.number,
        "state": i.state,
        "state_reason": i.state_reason,
        "title": i.title,
        "body": i.body,
        "user": user(urls, state.users[i.user_id]),
        "labels": [label(state, urls, state.labels[x]) for x in i.label_ids if x in state.labels],
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "milestone": None,
        "locked": i.locked,
        "active_lock_reason": None,
        "comments": i.comment_count,
        "closed_at": iso(i.closed_at),
        "created_at": iso_required(i.created_at),
        "updated_at": iso_required(i.updated_at),
        "closed_by": user_by_id(state, urls, i.closed_by_id),
        "author_association": author_association(state, r, i.user_id),
        "reactions": reactions(f"{api}/issues/{i.number}/reactions"),
        "timeline_url": f"{api}/issues/{i.number}/timeline",
        "performed_via_github_app": None,
    }
    if i.is_pull:
        body["pull_request"] = {
            "url": f"{api}/pulls/{i.number}",
            "html_url": f"{html}/pull/{i.number}",
            "diff_url": f"{html}/pull/{i.number}.diff",
            "patch_url": f"{html}/pull/{i.number}.patch",
            "merged_at": iso(i.merged_at),
        }
        body["draft"] = i.draft
    return body


def issue_event(state: ForgeState, urls: Urls, e: m.IssueEvent) -> JsonDict:
    """A `labeled` / `unlabeled` entry of `issues/list-events` (`issue-event-for-issue`)."""
    r = state.repos[e.repo_id]
    body: JsonDict = {
        "id": e.id,
        "node_id": node_id("LabeledEvent" if e.event == "labeled" else "UnlabeledEvent", e.id),
        "url": f"{repo_api(state, urls, r)}/issues/events/{e.id}",
        "actor": user(urls, state.users[e.actor_id]),
        "event": e.event,
        "commit_id": None,
        "commit_url": None,
        "created_at": iso_required(e.created_at),
        "performed_via_github_app": None,
    }
    if e.label_name is not None:
        body["label"] = {"name": e.label_name, "color": e.label_color or "ededed"}
    return body


def reactions(url: str) -> JsonDict:
    return {
        "url": url,
        "total_count": 0,
        "+1": 0,
        "-1": 0,
        "laugh": 0,
        "confused": 0,
        "heart": 0,
        "hooray": 0,
        "eyes": 0,
        "rocket": 0,
    }


def comment(state: ForgeState, urls: Urls, c: m.Comment) -> JsonDict:
    r = state.repos[c.repo_id]
    api = repo_api(state, urls, r)
    i = state.issue(r, c.number)
    kind = "pull" if i is not None and i.is_pull else "issues"
    return {
        "id": c.id,
        "node_id": node_id("IssueComment", c.id),
        "url": f"{api}/issues/comments/{c.id}",
        "html_url": f"{urls.web}/{state.repo_full_name(r)}/{kind}/{c.number}#issuecomment-{c.id}",
        "body": c.body,
        "user": user(urls, state.users[c.user_id]),
        "created_at": iso_required(c.created_at),
        "updated_at": iso_required(c.updated_at),
        "issue_url": f"{api}/issues/{c.number}",
        "author_association": author_association(state, r, c.user_id),
        "reactions": reactions(f"{api}/issues/comments/{c.id}/reactions"),
        "performed_via_github_app": None,
    }
