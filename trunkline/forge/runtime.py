"""The forge's live services: state changes that have consequences (webhooks, CI, merges).

Performs I/O (git, the webhook thread, the CI pool). Routers call these methods after
validating a request; each method mutates records under the state lock, saves, and
announces the change as GitHub would (a webhook per event). `reconcile_refs` is the one
place a push takes effect: it diffs the repository's git refs against the refs the forge
last saw, then fires `push`, moves pull request heads (`synchronize`), marks pull requests
merged whose head became reachable from their base, and schedules simulated CI.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from trunkline.forge import gitrepo
from trunkline.forge import models as m
from trunkline.forge import render_code as rc
from trunkline.forge import render_core as rr
from trunkline.forge.ci import CiRunner
from trunkline.forge.state import ForgeState
from trunkline.forge.webhooks import WebhookDispatcher, WebhookTarget

log = logging.getLogger(__name__)

CI_APP_SLUG = "forge-ci"


class Forge:
    """State + webhook dispatcher + CI runner, and the operations that tie them together."""

    def __init__(self, state: ForgeState, public_url: str, ci_workers: int = 2) -> None:
        self.state = state
        self.urls = rr.Urls.from_base(public_url)
        self.webhooks = WebhookDispatcher(target=self._webhook_target)
        self.ci = CiRunner(self, workers=ci_workers)
        self._facts: dict[tuple[int, str, str], rc.PullFacts] = {}
        self._git_locks: dict[int, threading.Lock] = {}
        self.faults: dict[str, Any] = {"remaining": 0}

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.state.start_autosave()
        self.webhooks.start()

    def stop(self) -> None:
        self.ci.stop()
        self.webhooks.stop()
        self.state.close()

    def git_lock(self, repo: m.Repo) -> threading.Lock:
        with self.state.lock:
            return self._git_locks.setdefault(repo.id, threading.Lock())

    def _webhook_target(self) -> WebhookTarget:
        with self.state.lock:
            for app in self.state.apps.values():
                if app.slug != CI_APP_SLUG and app.webhook_url:
                    return WebhookTarget(app.webhook_url, app.webhook_secret)
        return WebhookTarget(None, None)

    # ---- webhooks ----------------------------------------------------------------------

    def emit(self, event: str, repo: m.Repo | None, sender: m.User, **fields: Any) -> None:
        """Announce an event (payload built now, delivered by the background thread)."""
        with self.state.lock:
            payload: dict[str, Any] = dict(fields)
            if repo is not None:
                payload["repository"] = rr.repo(self.state, self.urls, repo)
                inst = self.state.installation_for_repo(repo)
                if inst is not None:
                    payload["installation"] = {
                        "id": inst.id,
                        "node_id": rr.node_id("Installation", inst.id),
                    }
            payload["sender"] = rr.user(self.urls, sender)
        self.webhooks.enqueue(event, payload)

    def emit_issue(self, action: str, issue: m.Issue, sender: m.User, **extra: Any) -> None:
        repo = self.state.repos[issue.repo_id]
        if issue.is_pull:
            self.emit(
                "pull_request",
                repo,
                sender,
                action=action,
                number=issue.number,
                pull_request=self.render_pull(issue),
                **extra,
            )
        else:
            with self.state.lock:
                body = rr.issue(self.state, self.urls, issue)
            self.emit("issues", repo, sender, action=action, issue=body, **extra)

    # ---- pull requests -----------------------------------------------------------------

    def pull_facts(self, issue: m.Issue) -> rc.PullFacts:
        repo = self.state.repos[issue.repo_id]
        bare = self.state.repo_git_path(repo)
        base_sha = repo.refs.get(f"refs/heads/{issue.base_ref}") or ""
        head_sha = issue.head_sha or ""
        key = (repo.id, base_sha, head_sha)
        cached = self._facts.get(key)
        if cached is not None:
            return cached
        if not base_sha or not head_sha:
            return rc.PullFacts(base_sha, None, 0, 0, 0, 0)
        mergeable = gitrepo.merge_tree(bare, base_sha, head_sha) is not None
        fork_point = gitrepo.merge_base(bare, base_sha, head_sha)
        files = gitrepo.diff_files(bare, fork_point, head_sha)
        facts = rc.PullFacts(
            base_sha=base_sha,
            mergeable=mergeable,
            commits=gitrepo.count_commits(bare, f"{base_sha}..{head_sha}"),
            additions=sum(f.additions for f in files),
            deletions=sum(f.deletions for f in files),
            changed_files=len(files),
        )
        if len(self._facts) > 5000:
            self._facts.clear()
        self._facts[key] = facts
        return facts

    def render_pull(self, issue: m.Issue) -> dict[str, Any]:
        facts = self.pull_facts(issue)
        with self.state.lock:
            return rc.pull(self.state, self.urls, issue, facts)

    def mark_merged(self, issue: m.Issue, merged_by: m.User, merge_sha: str) -> None:
        now = self.state.now()
        with self.state.lock:
            issue.merged = True
            issue.merged_at = now
            issue.merged_by_id = merged_by.id
            issue.merge_commit_sha = merge_sha
            issue.state = "closed"
            issue.closed_at = now
            issue.closed_by_id = merged_by.id
            issue.updated_at = now
            self.state.save()
        self.emit_issue("closed", issue, merged_by)

    # ---- pushes ------------------------------------------------------------------------

    def reconcile_refs(self, repo: m.Repo, pusher: m.User) -> list[tuple[str, str, str]]:
        """Take a push into account; returns the (ref, before, after) changes."""
        bare = self.state.repo_git_path(repo)
        current = gitrepo.list_refs(bare)
        with self.state.lock:
            before = dict(repo.refs)
            changes = [
                (ref, before.get(ref, gitrepo.ZERO_SHA), current.get(ref, gitrepo.ZERO_SHA))
                for ref in sorted(set(before) | set(current))
                if before.get(ref) != current.get(ref)
            ]
            if not changes:
                return []
            repo.refs = current
            repo.pushed_at = repo.updated_at = self.state.now()
            self.state.save()
        for ref, old, new in changes:
            self._after_ref_change(repo, pusher, ref, old, new)
        return changes

    def _after_ref_change(self, repo: m.Repo, pusher: m.User, ref: str, old: str, new: str) -> None:
        self.emit_push(repo, pusher, ref, old, new)
        if not ref.startswith("refs/heads/") or new == gitrepo.ZERO_SHA:
            return
        branch = ref.removeprefix("refs/heads/")
        bare = self.state.repo_git_path(repo)
        with self.state.lock:
            heads = [
                i
                for i in self.state.issues.values()
                if i.repo_id == repo.id
                and i.is_pull
                and i.state == "open"
                and i.head_ref == branch
                and i.head_sha != new
            ]
            for i in heads:
                i.head_sha = new
                i.updated_at = self.state.now()
        for i in heads:
            self.emit_issue("synchronize", i, pusher, before=old, after=new)
        with self.state.lock:
            bases = [
                i
                for i in self.state.issues.values()
                if i.repo_id == repo.id and i.is_pull and i.state == "open" and i.base_ref == branch
            ]
        for i in bases:
            if i.head_sha and gitrepo.is_ancestor(bare, i.head_sha, new):
                self.mark_merged(i, pusher, i.head_sha)
        if repo.ci is not None:
            config = m.CiConfig(**repo.ci)  # type: ignore[arg-type]
            self.ci.schedule(repo.id, bare, new, branch, config)

    def emit_push(self, repo: m.Repo, pusher: m.User, ref: str, old: str, new: str) -> None:
        bare = self.state.repo_git_path(repo)
        commits: list[dict[str, Any]] = []
        if new != gitrepo.ZERO_SHA:
            rng = new if old == gitrepo.ZERO_SHA else f"{old}..{new}"
            for sha in gitrepo.list_commits(bare, rng, limit=20):
                commits.append(self._push_commit(repo, gitrepo.commit_info(bare, sha)))
        forced = (
            old != gitrepo.ZERO_SHA
            and new != gitrepo.ZERO_SHA
            and not gitrepo.is_ancestor(bare, old, new)
        )
        full = self.state.repo_full_name(repo)
        self.emit(
            "push",
            repo,
            pusher,
            ref=ref,
            before=old,
            after=new,
            created=old == gitrepo.ZERO_SHA,
            deleted=new == gitrepo.ZERO_SHA,
            forced=forced,
            base_ref=None,
            compare=f"{self.urls.web}/{full}/compare/{old[:12]}...{new[:12]}",
            commits=commits,
            head_commit=commits[-1] if commits else None,
            pusher={"name": pusher.login, "email": pusher.email},
        )

    def _push_commit(self, repo: m.Repo, info: gitrepo.CommitInfo) -> dict[str, Any]:
        full = self.state.repo_full_name(repo)
        return {
            "id": info.sha,
            "tree_id": info.tree,
            "distinct": True,
            "message": info.message,
            "timestamp": rr.iso_required(info.committer_date),
            "url": f"{self.urls.web}/{full}/commit/{info.sha}",
            "author": {"name": info.author_name, "email": info.author_email},
            "committer": {"name": info.committer_name, "email": info.committer_email},
            "added": [],
            "removed": [],
            "modified": [],
        }

    # ---- checks ------------------------------------------------------------------------

    def suite_for(self, repo: m.Repo, app_id: int, sha: str, branch: str | None) -> m.CheckSuite:
        with self.state.lock:
            for suite in self.state.check_suites.values():
                if suite.repo_id == repo.id and suite.app_id == app_id and suite.head_sha == sha:
                    return suite
            now = self.state.now()
            suite = m.CheckSuite(
                id=self.state.new_id(),
                repo_id=repo.id,
                app_id=app_id,
                head_sha=sha,
                head_branch=branch,
                created_at=now,
                updated_at=now,
            )
            self.state.check_suites[suite.id] = suite
            return suite

    def branch_of(self, repo: m.Repo, sha: str) -> str | None:
        for ref, value in repo.refs.items():
            if value == sha and ref.startswith("refs/heads/"):
                return ref.removeprefix("refs/heads/")
        return None

    def create_check_run(self, repo: m.Repo, app: m.App, run: m.CheckRun) -> m.CheckRun:
        suite = self.suite_for(repo, app.id, run.head_sha, self.branch_of(repo, run.head_sha))
        with self.state.lock:
            run.suite_id = suite.id
            self.state.check_runs[run.id] = run
            self.state.save()
        sender = self.state.app_bot(app)
        self.emit("check_run", repo, sender, action="created", check_run=self._run_body(run))
        if run.status == "completed":
            self._announce_completion(repo, app, run)
        return run

    def update_check_run(self, run: m.CheckRun, changes: dict[str, Any]) -> None:
        repo = self.state.repos[run.repo_id]
        app = self.state.apps[run.app_id]
        with self.state.lock:
            was_completed = run.status == "completed"
            for key, value in changes.items():
                setattr(run, key, value)
            if run.conclusion is not None and run.status != "completed":
                run.status = "completed"
            if run.status == "completed" and run.completed_at is None:
                run.completed_at = self.state.now()
            self.state.check_suites[run.suite_id].updated_at = self.state.now()
            self.state.save()
        if run.status == "completed" and not was_completed:
            self._announce_completion(repo, app, run)

    def _run_body(self, run: m.CheckRun) -> dict[str, Any]:
        with self.state.lock:
            body = rc.check_run(self.state, self.urls, run)
        body["external_id"] = run.external_id or ""  # the webhook schema wants a string
        body["check_suite"] = self.render_suite(self.state.check_suites[run.suite_id], self.urls)
        return body

    def render_suite(self, suite: m.CheckSuite, urls: rr.Urls) -> dict[str, Any]:
        repo = self.state.repos[suite.repo_id]
        head = gitrepo.commit_info(self.state.repo_git_path(repo), suite.head_sha)
        with self.state.lock:
            return rc.check_suite(self.state, urls, suite, head)

    def _announce_completion(self, repo: m.Repo, app: m.App, run: m.CheckRun) -> None:
        sender = self.state.app_bot(app)
        self.emit("check_run", repo, sender, action="completed", check_run=self._run_body(run))
        with self.state.lock:
            suite = self.state.check_suites[run.suite_id]
            runs = [x for x in self.state.check_runs.values() if x.suite_id == suite.id]
            done = all(x.status == "completed" for x in runs)
        if done:
            body = self.render_suite(suite, self.urls)
            self.emit("check_suite", repo, sender, action="completed", check_suite=body)

    def rerun_ci(self, repo: m.Repo, run: m.CheckRun) -> bool:
        """Rerun the simulated CI of `run` on its SHA (False: not a CI run; its App gets a
        `rerequested` webhook instead)."""
        if run.app_id != self.ci_app().id or repo.ci is None:
            app = self.state.apps[run.app_id]
            sender = self.state.app_bot(app)
            self.emit(
                "check_run", repo, sender, action="rerequested", check_run=self._run_body(run)
            )
            return False
        config = m.CiConfig(**repo.ci)  # type: ignore[arg-type]
        with self.state.lock:
            attempt = sum(
                1
                for other in self.state.check_runs.values()
                if other.repo_id == repo.id
                and other.head_sha == run.head_sha
                and other.name == run.name
                and other.app_id == run.app_id
            )
        bare = self.state.repo_git_path(repo)
        branch = self.branch_of(repo, run.head_sha) or ""
        self.ci.schedule(repo.id, bare, run.head_sha, branch, config, attempt=attempt + 1)
        return True

    # ---- the CheckSink protocol (simulated CI) -----------------------------------------

    def ci_app(self) -> m.App:
        with self.state.lock:
            for app in self.state.apps.values():
                if app.slug == CI_APP_SLUG:
                    return app
            now = self.state.now()
            bot = m.User(
                id=self.state.new_id(), login=f"{CI_APP_SLUG}[bot]", type="Bot", created_at=now
            )
            self.state.users[bot.id] = bot
            app = m.App(
                id=self.state.new_id(),
                slug=CI_APP_SLUG,
                name="Forge CI",
                owner_id=bot.id,
                bot_user_id=bot.id,
                public_key_pem="",
                created_at=now,
            )
            self.state.apps[app.id] = app
            self.state.save()
            return app

    def ci_created(self, repo_id: int, sha: str, branch: str, name: str) -> int:
        repo = self.state.repos[repo_id]
        run = m.CheckRun(
            id=self.state.new_id(),
            repo_id=repo_id,
            suite_id=0,
            app_id=self.ci_app().id,
            head_sha=sha,
            name=name,
            status="queued",
            started_at=self.state.now(),
        )
        return self.create_check_run(repo, self.ci_app(), run).id

    def ci_started(self, run_id: int) -> None:
        run = self.state.check_runs[run_id]
        self.update_check_run(run, {"status": "in_progress", "started_at": self.state.now()})

    def ci_completed(self, run_id: int, conclusion: str, title: str, summary: str) -> None:
        run = self.state.check_runs[run_id]
        self.update_check_run(
            run,
            {
                "status": "completed",
                "conclusion": conclusion,
                "output_title": title,
                "output_summary": f"```\n{summary}\n```",
            },
        )
