"""JSON bodies for pull requests, reviews, commits, statuses, checks, refs and contents.

Pure; performs no I/O. Facts that need git (a pull request's base sha and mergeability, a
commit's metadata, a diff) are computed by the caller and passed in as data.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from trunkline.forge import gitrepo
from trunkline.forge import models as m
from trunkline.forge.render_core import (
    JsonDict,
    Urls,
    author_association,
    iso,
    iso_required,
    label,
    node_id,
    repo,
    repo_api,
    user,
    user_by_id,
)
from trunkline.forge.state import ForgeState


@dataclass(frozen=True)
class PullFacts:
    base_sha: str
    mergeable: bool | None
    commits: int
    additions: int
    deletions: int
    changed_files: int


def _branch(state: ForgeState, urls: Urls, r: m.Repo, ref: str, sha: str) -> JsonDict:
    owner = state.users[r.owner_id]
    return {
        "label": f"{owner.login}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user(urls, owner),
        "repo": repo(state, urls, r),
    }


def pull(state: ForgeState, urls: Urls, i: m.Issue, facts: PullFacts) -> JsonDict:
    r = state.repos[i.repo_id]
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}/pull/{i.number}"
    assignees = [user(urls, state.users[a]) for a in i.assignee_ids if a in state.users]
    pull_url = f"{api}/pulls/{i.number}"
    head_sha = i.head_sha or ""
    if i.state == "closed" or facts.mergeable is None:
        mergeable_state = "unknown"
    else:
        mergeable_state = "clean" if facts.mergeable else "dirty"
    return {
        "url": pull_url,
        "id": i.pull_id or i.id,
        "node_id": node_id("PullRequest", i.pull_id or i.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{i.number}",
        "commits_url": f"{pull_url}/commits",
        "review_comments_url": f"{pull_url}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{i.number}/comments",
        "statuses_url": f"{api}/statuses/{head_sha}",
        "number": i.number,
        "state": i.state,
        "locked": i.locked,
        "title": i.title,
        "user": user(urls, state.users[i.user_id]),
        "body": i.body,
        "labels": [
            _pull_label(state, urls, state.labels[x]) for x in i.label_ids if x in state.labels
        ],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso_required(i.created_at),
        "updated_at": iso_required(i.updated_at),
        "closed_at": iso(i.closed_at),
        "merged_at": iso(i.merged_at),
        "merge_commit_sha": i.merge_commit_sha,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _branch(state, urls, r, i.head_ref or "", head_sha),
        "base": _branch(state, urls, r, i.base_ref or "", facts.base_sha),
        "_links": {
            "self": {"href": pull_url},
            "html": {"href": html},
            "issue": {"href": f"{api}/issues/{i.number}"},
            "comments": {"href": f"{api}/issues/{i.number}/comments"},
            "review_comments": {"href": f"{pull_url}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{pull_url}/commits"},
            "statuses": {"href": f"{api}/statuses/{head_sha}"},
        },
        "author_association": author_association(state, r, i.user_id),
        "auto_merge": None,
        "draft": i.draft,
        "merged": i.merged,
        "mergeable": None if i.state == "closed" else facts.mergeable,
        "rebaseable": None if i.state == "closed" else facts.mergeable,
        "mergeable_state": mergeable_state,
        "merged_by": user_by_id(state, urls, i.merged_by_id),
        "comments": i.comment_count,
        "review_comments": sum(
            1 for c in state.review_comments.values() if c.repo_id == r.id and c.number == i.number
        ),
        "maintainer_can_modify": False,
        "commits": facts.commits,
        "additions": facts.additions,
        "deletions": facts.deletions,
        "changed_files": facts.changed_files,
    }


def _pull_label(state: ForgeState, urls: Urls, lab: m.Label) -> JsonDict:
    body = label(state, urls, lab)
    body["description"] = lab.description or ""  # pull-request-simple wants a string
    return body


def review(state: ForgeState, urls: Urls, rv: m.Review) -> JsonDict:
    r = state.repos[rv.repo_id]
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}/pull/{rv.number}#pullrequestreview-{rv.id}"
    return {
        "id": rv.id,
        "node_id": node_id("PullRequestReview", rv.id),
        "user": user(urls, state.users[rv.user_id]),
        "body": rv.body or "",
        "state": rv.state,
        "html_url": html,
        "pull_request_url": f"{api}/pulls/{rv.number}",
        "_links": {"html": {"href": html}, "pull_request": {"href": f"{api}/pulls/{rv.number}"}},
        "submitted_at": iso(rv.submitted_at),
        "commit_id": rv.commit_id,
        "author_association": author_association(state, r, rv.user_id),
    }


def review_comment(state: ForgeState, urls: Urls, c: m.ReviewComment) -> JsonDict:
    r = state.repos[c.repo_id]
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}/pull/{c.number}#discussion_r{c.id}"
    url = f"{api}/pulls/comments/{c.id}"
    return {
        "id": c.id,
        "node_id": node_id("PullRequestReviewComment", c.id),
        "url": url,
        "pull_request_review_id": c.review_id,
        "diff_hunk": "",
        "path": c.path,
        "position": c.line,
        "original_position": c.line or 0,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": user(urls, state.users[c.user_id]),
        "body": c.body,
        "created_at": iso_required(c.created_at),
        "updated_at": iso_required(c.created_at),
        "html_url": html,
        "pull_request_url": f"{api}/pulls/{c.number}",
        "author_association": author_association(state, r, c.user_id),
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "pull_request": {"href": f"{api}/pulls/{c.number}"},
        },
        "line": c.line,
        "side": c.side,
    }


def status(state: ForgeState, urls: Urls, s: m.CommitStatus) -> JsonDict:
    r = state.repos[s.repo_id]
    creator = state.users[s.creator_id]
    return {
        "url": f"{repo_api(state, urls, r)}/statuses/{s.sha}",
        "avatar_url": f"{urls.web}/avatars/{creator.login}",
        "id": s.id,
        "node_id": node_id("StatusContext", s.id),
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": iso_required(s.created_at),
        "updated_at": iso_required(s.updated_at),
        "creator": user(urls, creator),
    }


def combined_state(states: list[str]) -> str:
    """GitHub's rule: failure if any failed or errored, pending if any pending or none."""
    if any(s in ("failure", "error") for s in states):
        return "failure"
    if not states or any(s == "pending" for s in states):
        return "pending"
    return "success"


def latest_statuses(state: ForgeState, r: m.Repo, sha: str) -> list[m.CommitStatus]:
    latest: dict[str, m.CommitStatus] = {}
    for s in sorted(state.statuses.values(), key=lambda x: x.id):
        if s.repo_id == r.id and s.sha == sha:
            latest[s.context] = s
    return sorted(latest.values(), key=lambda x: -x.id)


def combined_status(state: ForgeState, urls: Urls, r: m.Repo, sha: str) -> JsonDict:
    latest = latest_statuses(state, r, sha)
    api = repo_api(state, urls, r)
    return {
        "state": combined_state([s.state for s in latest]),
        "statuses": [status(state, urls, s) for s in latest],
        "sha": sha,
        "total_count": len(latest),
        "repository": repo(state, urls, r),
        "commit_url": f"{api}/commits/{sha}",
        "url": f"{api}/commits/{sha}/status",
    }


def suite_status(runs: list[m.CheckRun]) -> tuple[str, str | None]:
    """A check suite's status and conclusion from its runs (pure rule, as on GitHub)."""
    if not runs:
        return "queued", None
    if any(x.status != "completed" for x in runs):
        busy = any(x.status == "in_progress" for x in runs)
        return ("in_progress" if busy else "queued"), None
    order = ["action_required", "cancelled", "timed_out", "failure", "neutral", "skipped"]
    conclusions = {x.conclusion for x in runs}
    for bad in order:
        if bad in conclusions:
            return "completed", ("success" if bad in ("neutral", "skipped") else bad)
    return "completed", "success"


def _app_body(state: ForgeState, urls: Urls, app_id: int) -> JsonDict | None:
    from trunkline.forge.render_core import app as render_app

    a = state.apps.get(app_id)
    return render_app(state, urls, a) if a is not None else None


def _pull_refs(state: ForgeState, urls: Urls, r: m.Repo, sha: str) -> list[JsonDict]:
    found = []
    api = repo_api(state, urls, r)
    for i in state.issues.values():
        if i.repo_id == r.id and i.is_pull and i.head_sha == sha and i.state == "open":
            found.append(
                {
                    "id": i.pull_id or i.id,
                    "number": i.number,
                    "url": f"{api}/pulls/{i.number}",
                    "head": {"ref": i.head_ref, "sha": i.head_sha, "repo": _mini_repo(api, r)},
                    "base": {
                        "ref": i.base_ref,
                        "sha": r.refs.get(f"refs/heads/{i.base_ref}", ""),
                        "repo": _mini_repo(api, r),
                    },
                }
            )
    return found


def _mini_repo(api: str, r: m.Repo) -> JsonDict:
    return {"id": r.id, "url": api, "name": r.name}


def check_suite(
    state: ForgeState, urls: Urls, cs: m.CheckSuite, head: gitrepo.CommitInfo | None
) -> JsonDict:
    r = state.repos[cs.repo_id]
    runs = [x for x in state.check_runs.values() if x.suite_id == cs.id]
    st, conclusion = suite_status(runs)
    api = repo_api(state, urls, r)
    return {
        "id": cs.id,
        "node_id": node_id("CheckSuite", cs.id),
        "head_branch": cs.head_branch,
        "head_sha": cs.head_sha,
        "status": st,
        "conclusion": conclusion,
        "url": f"{api}/check-suites/{cs.id}",
        "before": None,
        "after": cs.head_sha,
        "pull_requests": _pull_refs(state, urls, r, cs.head_sha),
        "app": _app_body(state, urls, cs.app_id),
        "repository": repo(state, urls, r),
        "created_at": iso_required(cs.created_at),
        "updated_at": iso_required(cs.updated_at),
        "head_commit": simple_commit(head) if head is not None else None,
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{api}/check-suites/{cs.id}/check-runs",
        "rerequestable": True,
        "runs_rerequestable": True,
    }


def simple_commit(info: gitrepo.CommitInfo) -> JsonDict:
    return {
        "id": info.sha,
        "tree_id": info.tree,
        "message": info.message,
        "timestamp": iso_required(info.committer_date),
        "author": {"name": info.author_name, "email": info.author_email},
        "committer": {"name": info.committer_name, "email": info.committer_email},
    }


def check_run(state: ForgeState, urls: Urls, cr: m.CheckRun) -> JsonDict:
    r = state.repos[cr.repo_id]
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}/runs/{cr.id}"
    return {
        "id": cr.id,
        "node_id": node_id("CheckRun", cr.id),
        "head_sha": cr.head_sha,
        "external_id": cr.external_id,
        "url": f"{api}/check-runs/{cr.id}",
        "html_url": html,
        "details_url": cr.details_url or html,
        "status": cr.status,
        "conclusion": cr.conclusion,
        "started_at": iso(cr.started_at),
        "completed_at": iso(cr.completed_at),
        "output": {
            "title": cr.output_title,
            "summary": cr.output_summary,
            "text": cr.output_text,
            "annotations_count": 0,
            "annotations_url": f"{api}/check-runs/{cr.id}/annotations",
        },
        "name": cr.name,
        "check_suite": {"id": cr.suite_id},
        "app": _app_body(state, urls, cr.app_id),
        "pull_requests": _pull_refs(state, urls, r, cr.head_sha),
    }


def _git_person(name: str, email: str, when: int) -> JsonDict:
    return {"name": name, "email": email, "date": iso_required(when)}


def commit(
    state: ForgeState,
    urls: Urls,
    r: m.Repo,
    info: gitrepo.CommitInfo,
    files: list[gitrepo.FileChange] | None = None,
) -> JsonDict:
    api = repo_api(state, urls, r)
    html = f"{urls.web}/{state.repo_full_name(r)}/commit/{info.sha}"
    body: JsonDict = {
        "sha": info.sha,
        "node_id": node_id("Commit", info.sha),
        "url": f"{api}/commits/{info.sha}",
        "html_url": html,
        "comments_url": f"{api}/commits/{info.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{info.sha}",
            "author": _git_person(info.author_name, info.author_email, info.author_date),
            "committer": _git_person(
                info.committer_name, info.committer_email, info.committer_date
            ),
            "message": info.message,
            "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
            "comment_count": 0,
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        },
        "author": _linked_user(state, urls, info.author_email),
        "committer": _linked_user(state, urls, info.committer_email),
        "parents": [
            {
                "sha": p,
                "url": f"{api}/commits/{p}",
                "html_url": f"{urls.web}/{state.repo_full_name(r)}/commit/{p}",
            }
            for p in info.parents
        ],
    }
    if files is not None:
        adds = sum(f.additions for f in files)
        dels = sum(f.deletions for f in files)
        body["stats"] = {"additions": adds, "deletions": dels, "total": adds + dels}
        body["files"] = [diff_entry(state, urls, r, info.sha, f) for f in files]
    return body


def _linked_user(state: ForgeState, urls: Urls, email: str) -> JsonDict | None:
    """The account GitHub links to a git e-mail address (a user's verified e-mail), or None."""
    wanted = email.lower()
    found = next((u for u in state.users.values() if (u.email or "").lower() == wanted), None)
    return None if found is None or not wanted else user(urls, found)


def diff_entry(
    state: ForgeState, urls: Urls, r: m.Repo, sha: str, f: gitrepo.FileChange
) -> JsonDict:
    api = repo_api(state, urls, r)
    web = f"{urls.web}/{state.repo_full_name(r)}"
    body: JsonDict = {
        "sha": None,
        "filename": f.filename,
        "status": f.status,
        "additions": f.additions,
        "deletions": f.deletions,
        "changes": f.additions + f.deletions,
        "blob_url": f"{web}/blob/{sha}/{f.filename}",
        "raw_url": f"{web}/raw/{sha}/{f.filename}",
        "contents_url": f"{api}/contents/{f.filename}?ref={sha}",
        "patch": f.patch,
    }
    if f.previous_filename is not None:
        body["previous_filename"] = f.previous_filename
    return body


def git_ref(state: ForgeState, urls: Urls, r: m.Repo, ref: str, sha: str) -> JsonDict:
    api = repo_api(state, urls, r)
    return {
        "ref": ref,
        "node_id": node_id("Ref", f"{r.id}:{ref}"),
        "url": f"{api}/git/{ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
    }


def content_entry(
    state: ForgeState,
    urls: Urls,
    r: m.Repo,
    entry: gitrepo.TreeEntry,
    ref: str,
    data: bytes | None,
) -> JsonDict:
    api = repo_api(state, urls, r)
    web = f"{urls.web}/{state.repo_full_name(r)}"
    kind = "dir" if entry.kind == "tree" else "file"
    self_url = f"{api}/contents/{entry.path}?ref={ref}"
    git_url = f"{api}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.sha}"
    html = f"{web}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{entry.path}"
    body: JsonDict = {
        "type": kind,
        "size": entry.size if kind == "file" else 0,
        "name": entry.path.rsplit("/", 1)[-1],
        "path": entry.path,
        "sha": entry.sha,
        "url": self_url,
        "git_url": git_url,
        "html_url": html,
        "download_url": f"{web}/raw/{ref}/{entry.path}" if kind == "file" else None,
        "_links": {"self": self_url, "git": git_url, "html": html},
    }
    if data is not None:
        encoded = base64.encodebytes(data).decode()
        body.update(content=encoded, encoding="base64")
    return body
