"""Every escalation path end to end against the local forge: real HTTP, real git push.

One forge for the module; each case gets its own issue and worktree, runs the scripted
agents until they escalate, then performs the escalation twice (idempotency): the branch is
pushed when there were commits, one comment carries the reason, spend and next steps with
the notify list mentioned, and the escalation label is on the issue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from agents_testkit import (
    CALC_BUGGY,
    CALC_FIXED,
    HEAD_SHA,
    PLAN_ID,
    PYTEST,
    TEST_CALC,
    approve_plan,
    config,
    submit_plan,
    tool,
)

from trunkline.agents.escalation import (
    EscalationPolicy,
    comment_key,
    perform_escalation,
)
from trunkline.agents.messages import ModelRequest, ModelResponse, ProviderUnavailableError
from trunkline.agents.outcome import EscalationReason, OutcomeKind
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import WorkItem
from trunkline.agents.sandbox import RefusingSandbox
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.work_item_runner import AgentRunConfig, WorkItemRunner
from trunkline.clock import FakeClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.errors import NotFoundError
from trunkline.github.port import GitHubPort
from trunkline.github.sticky import marker
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

REPO = "alice/demo"
POLICY = EscalationPolicy(label="needs-human", notify=("bob", "@acme/maintainers"))


@dataclass
class World:
    forge: ForgeHandle
    github: GitHubPort
    tokens: InstallationTokenProvider
    workspace: Workspace
    spec: RepositorySpec

    def new_issue(self, title: str) -> int:
        response = httpx.post(
            f"{self.forge.api_url}/repos/{REPO}/issues",
            json={"title": title, "body": "add() is wrong"},
            headers={"Authorization": f"token {self.forge.token('alice')}"},
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["number"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("escalation")
    source = tmp / "source"
    (source / "src").mkdir(parents=True)
    (source / "tests").mkdir()
    (source / "src" / "__init__.py").write_text("")
    (source / "src" / "calc.py").write_text(CALC_BUGGY)
    (source / "tests" / "test_calc.py").write_text(TEST_CALC)
    with running_forge(default_spec(source=source), data_dir=tmp / "forge") as forge:
        clock = FakeClock(current=datetime.fromisoformat(forge.admin("GET", "health")["now"]))
        http = httpx.Client(timeout=30)
        try:
            clients = forge.app_clients(clock, http)
            tokens = clients.tokens(forge.installation_id)
            github = clients.for_installation(forge.installation_id)
            workspace = Workspace(tmp / "data", Identity("trunkline[bot]", "bot@example.com"))
            spec = RepositorySpec(REPO, f"{forge.base_url}/alice/demo.git")
            yield World(forge, github, tokens, workspace, spec)
        finally:
            http.close()


@dataclass
class HookedProvider(ScriptedProvider):
    """The scripted provider, plus time passing per call and a failure at call N."""

    clock: FakeClock | None = None
    seconds_per_call: float = 0.0
    fail_at_call: int | None = None

    def complete(self, request: ModelRequest) -> ModelResponse:
        if self.fail_at_call is not None and len(self.requests) + 1 == self.fail_at_call:
            raise ProviderUnavailableError("529 overloaded after the client's retries")
        if self.clock is not None:
            self.clock.advance(self.seconds_per_call)
        return super().complete(request)


WRITE = tool("write_file", path="src/calc.py", content=CALC_FIXED)
REPORT = tool("submit_report", summary="Fixed the operator.")
CHANGES = tool(
    "submit_review",
    subject=HEAD_SHA,
    verdict="request_changes",
    summary="Needs a negative test.",
    findings=[{"path": "tests/test_calc.py", "severity": "major", "message": "no negatives"}],
)
CLAIMED_REPORT = tool(
    "submit_report",
    summary="Fixed and tested.",
    commands_run=[{"command": PYTEST, "exit_code": 0}],
)


def with_usage(step: dict[str, object], **usage: int) -> dict[str, object]:
    return {**step, "usage": {"input_tokens": 0, "output_tokens": 0, **usage}}


@dataclass(frozen=True)
class Case:
    reason: EscalationReason
    script: list[dict[str, object]]
    config: Callable[[], AgentRunConfig] = field(default=config)
    pushes: bool = True
    seconds_per_call: float = 0.0
    fail_at_call: int | None = None


PLANNED = [submit_plan(), approve_plan()]
CASES = {
    "tokens": Case(
        EscalationReason.BUDGET_TOKENS,
        [*PLANNED, with_usage(WRITE, input_tokens=5_000_000), REPORT],
        lambda: config(tokens=5_010_000),
    ),
    "usd": Case(
        EscalationReason.BUDGET_USD,
        [*PLANNED, with_usage(WRITE, input_tokens=1_000_000), REPORT],
        lambda: config(usd="3.02"),
    ),
    "wall": Case(
        EscalationReason.BUDGET_WALL,
        [*PLANNED, WRITE, REPORT],
        lambda: config(wall=100),
        seconds_per_call=40,
    ),
    "max_turns": Case(
        EscalationReason.MAX_TURNS,
        [*PLANNED, WRITE, *[tool("read_file", path="src/calc.py")] * 5],
        lambda: config(turns=2),
    ),
    "review_rounds": Case(
        EscalationReason.MAX_REVIEW_ROUNDS,
        [*PLANNED, WRITE, REPORT, CHANGES],
        lambda: config(rounds=1),
    ),
    "plan_rejected": Case(
        EscalationReason.PLAN_REJECTED,
        [
            submit_plan(),
            tool(
                "submit_review",
                subject=PLAN_ID,
                verdict="request_changes",
                summary="No tests planned.",
                findings=[{"severity": "blocker", "message": "no tests"}],
            ),
        ],
        lambda: config(rounds=1),
        pushes=False,
    ),
    "reviewer_escalates": Case(
        EscalationReason.REVIEWER_ESCALATED,
        [
            *PLANNED,
            WRITE,
            REPORT,
            tool("submit_review", subject=HEAD_SHA, verdict="escalate", summary="API change."),
        ],
    ),
    "provider_failure": Case(EscalationReason.PROVIDER_ERROR, [*PLANNED, WRITE], fail_at_call=4),
    "max_tokens": Case(
        EscalationReason.MAX_TOKENS_STOP,
        [
            *PLANNED,
            WRITE,
            {"content": [{"type": "text", "text": "and then"}], "stop_reason": "max_tokens"},
        ],
    ),
    "sandbox_refused": Case(
        EscalationReason.INVALID_OUTPUT,
        [*PLANNED, WRITE, tool("run_command", command=PYTEST), CLAIMED_REPORT, CLAIMED_REPORT],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_agents_escalation_is_performed_on_the_forge(world: World, name: str) -> None:
    case = CASES[name]
    number = world.new_issue(f"escalation {name}")
    tree = world.workspace.create_worktree(world.spec, number, name, "main", world.tokens.token())
    clock = FakeClock()
    provider = HookedProvider(
        ScriptedProvider.of(case.script).script,
        clock=clock,
        seconds_per_call=case.seconds_per_call,
        fail_at_call=case.fail_at_call,
    )
    runner = WorkItemRunner(
        item=WorkItem(f"{REPO}#{number}", f"escalation {name}", "add() is wrong"),
        worktree=tree.path,
        base_sha=tree.base_sha,
        config=case.config(),
        provider=provider,
        sandbox=RefusingSandbox("bubblewrap is not available here"),
        timeline=InMemoryTimeline(),
        clock=clock,
        redactor=Redactor.of([]),
    )
    outcome = runner.run()
    assert (outcome.kind, outcome.reason) == (OutcomeKind.ESCALATED, case.reason)
    assert bool(outcome.commits) is case.pushes

    results = [
        perform_escalation(
            outcome,
            github=world.github,
            workspace=world.workspace,
            spec=world.spec,
            worktree=tree,
            issue_number=number,
            token=world.tokens.token,
            policy=POLICY,
        )
        for _ in range(2)
    ]

    assert results[0].comment_id == results[1].comment_id
    comments = world.github.list_issue_comments(REPO, number)
    assert len(comments) == 1
    (comment,) = comments
    assert comment.author.login == "trunkline[bot]"
    assert comment.body.startswith(marker(comment_key(outcome)))
    assert f"escalated ({case.reason.value})" in comment.body
    assert f"{outcome.spend.tokens} of {outcome.limits.tokens} tokens" in comment.body
    assert "**Next steps:**" in comment.body
    assert "cc @bob @acme/maintainers" in comment.body
    assert world.github.get_issue(REPO, number).labels == ("needs-human",)
    if case.pushes:
        assert outcome.head_sha is not None
        assert results[1].push.sha == outcome.head_sha
        assert world.github.get_ref(REPO, f"heads/{tree.branch}").sha == outcome.head_sha
        assert f"`{tree.branch}` at `{outcome.head_sha[:12]}`" in comment.body
    else:
        assert results[0].push.sha is None
        with pytest.raises(NotFoundError):
            world.github.get_ref(REPO, f"heads/{tree.branch}")
        assert "was not pushed" in comment.body


def test_agents_a_refused_push_is_reported_not_lost(world: World, tmp_path: Path) -> None:
    """Someone pushed to the item's branch meanwhile: the comment says so, nothing forced."""
    number = world.new_issue("escalation refused push")
    tree = world.workspace.create_worktree(world.spec, number, "refused", "main", None)
    other = world.workspace.create_worktree(world.spec, number + 1000, "other", "main", None)
    (other.path / "README.md").write_text("someone else\n")
    assert world.workspace.commit_all(world.spec, other, "someone else") is not None
    other_sha = world.workspace.resolve(world.spec, f"refs/heads/{other.branch}")
    world.workspace.push_commit(world.spec, other_sha, tree.branch, world.tokens.token())
    runner = WorkItemRunner(
        item=WorkItem(f"{REPO}#{number}", "t", "b"),
        worktree=tree.path,
        base_sha=tree.base_sha,
        config=config(turns=1),
        provider=ScriptedProvider.of([*PLANNED, WRITE]),
        sandbox=RefusingSandbox("none"),
        timeline=InMemoryTimeline(),
        clock=FakeClock(),
        redactor=Redactor.of([]),
    )
    outcome = runner.run()
    assert outcome.reason is EscalationReason.MAX_TURNS
    result = perform_escalation(
        outcome,
        github=world.github,
        workspace=world.workspace,
        spec=world.spec,
        worktree=tree,
        issue_number=number,
        token=world.tokens.token,
        policy=POLICY,
    )
    assert result.push.rejected
    assert world.github.get_ref(REPO, f"heads/{tree.branch}").sha == other_sha  # not forced
    body = world.github.list_issue_comments(REPO, number)[0].body
    assert "was refused" in body
