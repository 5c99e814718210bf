"""Gates, approvals, queue commands and the merge-group gate against the local forge.

One forge for the module (real HTTP, real git, real webhooks captured by a loopback receiver
and fed through the bot's `Router`), a scratch SQLite store with the real `ApprovalStore`,
`LockManager`, `work_items` rows and the real `QueueService`. Each test works on its own PR.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prerequisites import require_shared_github
from sqlalchemy import Engine, insert

from trunkline.bot.approval_store import ApprovalStore
from trunkline.bot.check_reports import GROUP_CHECK_NAME
from trunkline.bot.events import parse_payload
from trunkline.bot.gate_runner import (
    verdict_body,
)
from trunkline.bot.queue_commands import build_gate_runner, register_queue_gates, reply_key
from trunkline.bot.router import RoutedEvent, Router
from trunkline.clock import SystemClock
from trunkline.forge.testing import ForgeHandle, WebhookReceiver, default_spec, running_forge
from trunkline.github.adapter import AdapterOptions, PyGithubAdapter
from trunkline.github.model import CheckConclusion, CheckRun, ReviewEvent
from trunkline.github.sticky import sticky_body
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.locks.leases import Grant, LockManager
from trunkline.queue.gates import ReviewerVerdict
from trunkline.queue.service import QueueService
from trunkline.settings import load_settings
from trunkline.store.tables import WorkItem
from trunkline.store.testing import migrated_engine
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

REPO = "alice/demo"
BOT = "trunkline[bot]"
POLICY = """\
version: 1
subsystems:
  api: {paths: ["api/**"], owners: [alice, bob]}
approvals:
  low: {required: 1}
queue: {required_checks: [ci]}
"""


@dataclass
class Rig:
    forge: ForgeHandle
    receiver: WebhookReceiver
    github: PyGithubAdapter
    tokens: InstallationTokenProvider
    workspace: Workspace
    spec: RepositorySpec
    engine: Engine
    queue: QueueService
    locks: LockManager
    router: Router
    http: httpx.Client
    human: Workspace  # commits as alice (alice@forge.localhost, linked to her account)
    consumed: set[str] = field(default_factory=set)
    feed_log: list[dict[str, Any]] = field(default_factory=list)

    def as_user(self, login: str, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(
            method,
            f"{self.forge.api_url}{path}",
            json=body,
            headers={"Authorization": f"token {self.forge.token(login)}"},
        )
        response.raise_for_status()
        return response.json()

    def feed(self, event: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait for the forge's webhook `event` matching `match`, then route it to the bot."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for hook in self.receiver.snapshot():
                if hook.delivery in self.consumed or hook.event != event:
                    continue
                payload = hook.payload()
                if match(payload):
                    self.consumed.add(hook.delivery)
                    self.feed_log.append(payload)
                    self.route(event, payload)
                    return payload
            time.sleep(0.02)
        raise TimeoutError(f"no {event} webhook matched")

    def route(self, event: str, payload: dict[str, Any]) -> None:
        parsed = parse_payload(event, payload)
        assert parsed is not None
        self.router.dispatch(RoutedEvent("test", event, payload.get("action"), parsed, payload))

    def open_pr(
        self, slug: str, requester: str = "bob", author: str | None = None
    ) -> tuple[int, str]:
        """An issue by `requester`, the bot's branch, a PR (by the bot, or `author`), its
        work item and its locks."""
        issue = self.as_user(requester, "POST", f"/repos/{REPO}/issues", {"title": slug})
        number = int(issue["number"])
        head = self.push(number, slug, {f"api/{slug}.py": "x = 1\n"})
        branch = f"trunkline/issue-{number}-{slug}"
        if author is None:
            pr_number = self.github.create_pull(REPO, title=slug, head=branch, base="main").number
        else:
            body = {"title": slug, "head": branch, "base": "main"}
            pr_number = int(self.as_user(author, "POST", f"/repos/{REPO}/pulls", body)["number"])
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                insert(WorkItem).values(
                    repo_full_name=REPO,
                    issue_number=number,
                    state="reviewing",
                    title=slug,
                    pr_number=pr_number,
                    head_sha=head,
                    data={},
                    created_at=now,
                    updated_at=now,
                )
            )
        grant = self.locks.acquire(REPO, f"issue-{number}", {"api": 50}, timedelta(hours=1))
        assert isinstance(grant, Grant)
        self.feed("pull_request", lambda p: p["action"] == "opened" and p["number"] == pr_number)
        return pr_number, head

    def verdict(
        self, pr: int, sha: str, verdict: ReviewerVerdict = ReviewerVerdict.APPROVE
    ) -> None:
        """The reviewer agent's verdict: a COMMENT review by the bot carrying the marker."""
        body = verdict_body(verdict, "reviewed")
        self.github.create_review(REPO, pr, commit_sha=sha, event=ReviewEvent.COMMENT, body=body)
        self.feed(
            "pull_request_review",
            lambda p: p["pull_request"]["number"] == pr and p["review"]["user"]["login"] == BOT,
        )

    def push(self, item: int, slug: str, files: dict[str, str]) -> str:
        tree = self.workspace.create_worktree(self.spec, item, slug, "main", self.tokens.token())
        for path, text in files.items():
            (tree.path / path).parent.mkdir(parents=True, exist_ok=True)
            (tree.path / path).write_text(text)
        assert self.workspace.commit_all(self.spec, tree, f"change {slug}") is not None
        return self.workspace.push_branch(self.spec, tree, self.tokens.token())

    def push_as_alice(self, item: int, slug: str, files: dict[str, str]) -> str:
        """alice commits on the work item's pushed branch and pushes; returns the new head."""
        tree = self.human.create_worktree(self.spec, item, slug, "main", self.tokens.token())
        for path, text in files.items():
            (tree.path / path).parent.mkdir(parents=True, exist_ok=True)
            (tree.path / path).write_text(text)
        assert self.human.commit_all(self.spec, tree, f"alice on {slug}") is not None
        return self.human.push_branch(self.spec, tree, self.tokens.token())

    def runs(self, sha: str) -> dict[str, CheckRun]:
        return {run.name: run for run in self.github.list_check_runs(REPO, sha)}

    def approve(self, login: str, pr: int, sha: str) -> None:
        self.as_user(
            login,
            "POST",
            f"/repos/{REPO}/pulls/{pr}/reviews",
            {"commit_id": sha, "event": "APPROVE"},
        )
        self.feed(
            "pull_request_review",
            lambda p: p["pull_request"]["number"] == pr and p["review"]["user"]["login"] == login,
        )

    def runner_approvals(self, pr: int) -> set[tuple[str, str]]:
        return {(a.user, a.sha) for a in ApprovalStore(self.engine).approvals(REPO, pr)}

    def comment(self, login: str, pr: int, body: str) -> str | None:
        made = self.as_user(login, "POST", f"/repos/{REPO}/issues/{pr}/comments", {"body": body})
        self.feed("issue_comment", lambda p: p["comment"]["id"] == made["id"])
        prefix = sticky_body(reply_key(int(made["id"]), 1), "")
        for comment in self.github.list_issue_comments(REPO, pr):
            if comment.author.login == BOT and comment.body.startswith(prefix):
                return comment.body
        return None


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("gates")
    source = tmp / "source"
    (source / ".github").mkdir(parents=True)
    (source / "api").mkdir()
    (source / "README.md").write_text("demo\n")
    (source / "api" / "__init__.py").write_text("")
    (source / ".github" / "trunkline.yml").write_text(POLICY)
    engine = migrated_engine(f"sqlite:///{tmp / 'store.db'}")
    http = httpx.Client(timeout=30)
    with (
        WebhookReceiver() as receiver,
        running_forge(
            default_spec(source, webhook_url=receiver.url), data_dir=tmp / "forge"
        ) as forge,
    ):
        clock = SystemClock()
        tokens = InstallationTokenProvider(
            base_url=forge.api_url,
            app_id=str(forge.app_id),
            private_key=forge.private_key_path.read_text(),
            installation_id=forge.installation_id,
            clock=clock,
            http=http,
        )
        github = PyGithubAdapter(
            base_url=forge.api_url,
            tokens=tokens,
            clock=clock,
            bot_login=BOT,
            options=AdapterOptions(min_write_interval=0.0),
        )
        queue = QueueService(engine, clock)
        locks = LockManager(engine)
        settings = load_settings(github_bot_login=BOT, team_members={"@alice/reviewers": ["dave"]})
        runner = build_gate_runner(engine, queue, settings)
        assert runner.team_members == {"@alice/reviewers": frozenset({"dave"})}
        router = Router()
        register_queue_gates(router, runner, queue, lambda _installation: github)
        workspace = Workspace(tmp / "data", Identity(BOT, "bot@example.com"))
        human = Workspace(tmp / "alice", Identity("alice", "alice@forge.localhost"))
        spec = RepositorySpec(REPO, f"{forge.base_url}/alice/demo.git")
        try:
            yield Rig(
                forge,
                receiver,
                github,
                tokens,
                workspace,
                spec,
                engine,
                queue,
                locks,
                router,
                http,
                human,
            )
        finally:
            http.close()
            engine.dispose()


def test_a_pr_gets_the_three_gate_check_runs(rig: Rig) -> None:
    _pr, head = rig.open_pr("runs")
    runs = rig.runs(head)
    assert runs["trunkline/scope"].conclusion is CheckConclusion.SUCCESS
    assert "within the held locks (api)" in (runs["trunkline/scope"].summary or "")
    assert runs["trunkline/review"].conclusion is CheckConclusion.FAILURE
    assert runs["trunkline/approval"].conclusion is CheckConclusion.FAILURE
    assert "0 of 1" in (runs["trunkline/approval"].summary or "")
    rig.route("pull_request", rig.feed_log[-1])  # a redelivery converges: no second run
    names = [run.name for run in rig.github.list_check_runs(REPO, head)]
    assert sorted(names) == ["trunkline/approval", "trunkline/review", "trunkline/scope"]


def test_human_approval_satisfies_the_gate_and_a_push_voids_it(rig: Rig) -> None:
    pr, head = rig.open_pr("approve")
    rig.approve("alice", pr, head)
    approval = rig.runs(head)["trunkline/approval"]
    assert approval.conclusion is CheckConclusion.SUCCESS
    assert "approved by alice" in (approval.summary or "")

    issue = int(rig.github.get_pull(REPO, pr).head_ref.split("-")[1])
    new_head = rig.push(issue, "approve", {"api/approve.py": "x = 2\n"})
    rig.feed(
        "pull_request",
        lambda p: p["action"] == "synchronize" and p["pull_request"]["head"]["sha"] == new_head,
    )
    voided = rig.runs(new_head)["trunkline/approval"]
    assert voided.conclusion is CheckConclusion.FAILURE
    assert "earlier commit do not count: alice" in (voided.summary or "")


def test_requester_and_bot_approvals_do_not_count(rig: Rig) -> None:
    # carol opened the PR (GitHub refuses approvals of one's own PR), bob asked for the work.
    pr, head = rig.open_pr("nobody", requester="bob", author="carol")
    rig.github.create_review(REPO, pr, commit_sha=head, event=ReviewEvent.APPROVE, body="ok")
    rig.feed(
        "pull_request_review",
        lambda p: p["pull_request"]["number"] == pr and p["review"]["user"]["login"] == BOT,
    )
    rig.approve("bob", pr, head)  # bob is an owner of api, but he asked for the work
    runs = rig.runs(head)
    assert runs["trunkline/review"].conclusion is CheckConclusion.SUCCESS  # the bot's verdict
    approval = runs["trunkline/approval"]
    assert approval.conclusion is CheckConclusion.FAILURE
    assert "bob (the requester)" in (approval.summary or "")
    assert "trunkline[bot] (a bot)" in (approval.summary or "")


def test_read_only_approve_is_refused_and_explain_lists_every_gate(rig: Rig) -> None:
    pr, head = rig.open_pr("commands")
    refusal = rig.comment("carol", pr, "/trunkline approve")
    assert refusal is not None
    assert "Sorry @carol" in refusal
    assert rig.runs(head)["trunkline/approval"].conclusion is CheckConclusion.FAILURE

    explained = rig.comment("carol", pr, "/trunkline explain") or ""
    for gate in ("scope", "review", "approval"):
        assert f" {gate}: " in explained
    assert "risk: low" in explained
    assert "not queued" in explained


def test_queue_by_a_maintainer_enqueues_in_the_queue_service(rig: Rig) -> None:
    pr, head = rig.open_pr("queue")
    reply = rig.comment("alice", pr, "/trunkline queue") or ""
    assert "Queued #" in reply
    state = rig.queue.state(REPO, "main")
    assert state is not None
    entry = state.entry(pr)
    assert entry is not None
    assert entry.head_sha == head
    assert {v.gate.value: v.ok for v in entry.verdicts} == {
        "scope": True,
        "review": False,
        "approval": False,
    }
    assert state.base_sha == rig.github.get_ref(REPO, "heads/main").sha
    explained = rig.comment("alice", pr, "/trunkline explain") or ""
    assert "in the queue" in explained


def test_merge_group_example_gets_the_gate_check_run(rig: Rig) -> None:
    examples: list[dict[str, Any]] = json.loads(
        (require_shared_github() / "webhook-examples.json").read_text()
    )
    example = next(e for e in examples if e["name"] == "merge_group")["examples"][0]
    pr, head = rig.open_pr("group")

    def group(ref_sha: str) -> dict[str, Any]:
        payload: dict[str, Any] = copy.deepcopy(example)
        payload["repository"]["full_name"] = REPO
        payload["installation"] = {"id": rig.forge.installation_id}
        payload["merge_group"]["head_sha"] = head
        payload["merge_group"]["base_sha"] = rig.github.get_ref(REPO, "heads/main").sha
        payload["merge_group"]["head_ref"] = f"refs/heads/gh-readonly-queue/main/pr-{pr}-{ref_sha}"
        return payload

    rig.route("merge_group", group(head))
    gate = rig.runs(head)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert f"#{pr} at `{head[:7]}`" in (gate.summary or "")

    rig.verdict(pr, head)
    rig.approve("alice", pr, head)
    rig.route("merge_group", group(head))
    assert rig.runs(head)[GROUP_CHECK_NAME].conclusion is CheckConclusion.SUCCESS


def test_approve_command_binds_to_the_head_its_comment_was_written_for(rig: Rig) -> None:
    pr, head = rig.open_pr("bind")
    rig.forge.advance_clock(2)  # GitHub's timestamps have whole seconds
    reply = rig.comment("alice", pr, "/trunkline approve") or ""
    assert f"Recorded @alice's approval of `{head[:7]}`; it counts" in reply

    # A push the bot has not handled yet: the job cannot show the new head was the head
    # when bob wrote his comment, so nothing is recorded.
    issue = int(rig.github.get_pull(REPO, pr).head_ref.split("-")[1])
    new_head = rig.push(issue, "bind", {"api/bind.py": "x = 2\n"})
    refusal = rig.comment("bob", pr, "/trunkline approve") or ""
    assert f"Sorry @bob, I cannot be sure that `{new_head}` was already the head" in refusal
    approvals = rig.runner_approvals(pr)
    assert ("bob", new_head) not in approvals
    reply = rig.comment("alice", pr, f"/trunkline approve {new_head}") or ""
    assert f"Recorded @alice's approval of `{new_head[:7]}`; it counts" in reply
    assert rig.runs(new_head)["trunkline/approval"].conclusion is CheckConclusion.SUCCESS


def test_a_commit_author_is_not_an_independent_approver(rig: Rig) -> None:
    pr, _head = rig.open_pr("authored")
    issue = int(rig.github.get_pull(REPO, pr).head_ref.split("-")[1])
    new_head = rig.push_as_alice(issue, "authored", {"api/authored.py": "y = 1\n"})
    rig.feed(
        "pull_request",
        lambda p: p["action"] == "synchronize" and p["pull_request"]["head"]["sha"] == new_head,
    )
    authors = {c.author.login for c in rig.github.list_pull_commits(REPO, pr) if c.author}
    assert authors == {"alice"}  # the bot's commit has no linked account
    rig.approve("alice", pr, new_head)
    approval = rig.runs(new_head)["trunkline/approval"]
    assert approval.conclusion is CheckConclusion.FAILURE
    assert "alice (authored commits in this pull request" in (approval.summary or "")
    rig.approve("bob", pr, new_head)  # bob asked for the work: the requester
    rig.verdict(pr, new_head)
    assert rig.runs(new_head)["trunkline/approval"].conclusion is CheckConclusion.FAILURE
