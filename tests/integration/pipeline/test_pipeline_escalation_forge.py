"""Every escalation path of the production dispatch pipeline, end to end on the local forge.

The production composition (`build_service` + `configure_dispatch`) on SQLite, the forge over
HTTP and git, the scripted provider, `run_command` and the self-check under bubblewrap. Each
case labels a fresh issue and drains the bot's jobs until the item escalates, then asserts on
the forge and in the store: the work so far on the item's branch when there was work (absent
otherwise; never forced), ONE bot comment with the reason, the spend, the next steps and the
notify list mentioned, the escalation label, and the item `escalated` with that reason.
Budget cases also show that the recorded spend never exceeds its cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from pipeline_forge_rig import (
    CALC_FIXED,
    HEAD_SHA,
    PLAN_ID,
    PYTEST,
    REPO,
    ForgeBot,
    forge_bot,
    tool,
    write_source,
)
from prerequisites import require_bwrap
from sqlalchemy import func, select

from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.sticky import marker
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.tables import AgentRun, AgentStep
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

NOTIFY_LINE = "cc @bob @acme/maintainers"
CALC_AGAIN = "def add(a, b):\n    # adds\n    return a + b\n"

PLAN = tool(
    "submit_plan",
    summary="Fix add() so it adds.",
    steps=["Change the operator in src/calc.py", "Run the tests"],
    paths=["src/calc.py"],
    acceptance_criteria=["add(2, 3) == 5"],
    tests_to_run=["pytest -q"],
    risk_notes=[],
)
PLAN_OK = tool("submit_review", subject=PLAN_ID, verdict="approve", summary="The plan is sound.")
PLANNED = [PLAN, PLAN_OK]
WRITE = tool("write_file", path="src/calc.py", content=CALC_FIXED)
READ = tool("read_file", path="src/calc.py")
REPORT = tool("submit_report", summary="Fixed the operator in add().")
CLAIMED_REPORT = tool(
    "submit_report",
    summary="Fixed and tested.",
    commands_run=[{"command": PYTEST, "exit_code": 0}],
)


def with_usage(step: dict[str, object], **usage: int) -> dict[str, object]:
    return {**step, "usage": {"input_tokens": 0, "output_tokens": 0, **usage}}


def review(verdict: str, summary: str, *findings: dict[str, object]) -> dict[str, object]:
    return tool(
        "submit_review", subject=HEAD_SHA, verdict=verdict, summary=summary, findings=[*findings]
    )


def policy(**agents: object) -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "agents": {"commands": [PYTEST], **agents},
            "queue": {"required_checks": ["ci"]},
            "escalation": {"label": "needs-human", "notify": ["bob", "@acme/maintainers"]},
        }
    )


@dataclass(frozen=True)
class Case:
    reason: str
    script: list[dict[str, object]]
    policy: Policy = field(default_factory=policy)
    pushed: str | None = CALC_FIXED  # src/calc.py on the pushed branch; None: no branch
    tick: float = 0.0
    tokens_cap: int | None = None
    usd_cap: Decimal | None = None


CASES = {
    "tokens": Case(
        "budget_tokens",
        [*PLANNED, with_usage(WRITE, input_tokens=190_000), REPORT],
        policy(budget={"tokens": 200_000}),
        tokens_cap=200_000,
    ),
    "usd": Case(
        "budget_usd",
        [*PLANNED, with_usage(WRITE, input_tokens=300_000), REPORT],
        policy(budget={"usd": 1.0}),
        usd_cap=Decimal("1.0"),
    ),
    "wall": Case(
        "budget_wall",
        [*PLANNED, WRITE, READ, READ, READ, REPORT],
        policy(budget={"wall": "60s"}),
        tick=10.0,
    ),
    "max_turns": Case(
        "max_turns",
        [*PLANNED, WRITE, *[READ] * 6],  # a looping executor
        policy(executor={"max_turns": 3}),
    ),
    "review_rounds": Case(
        "max_review_rounds",
        [
            *PLANNED,
            WRITE,
            REPORT,
            review(
                "request_changes",
                "Explain the operator.",
                {"path": "src/calc.py", "line": 2, "severity": "major", "message": "say why"},
            ),
            tool("write_file", path="src/calc.py", content=CALC_AGAIN),
            REPORT,
            review(
                "request_changes",
                "Add a negative test.",
                {"path": "tests/test_calc.py", "line": 5, "severity": "major", "message": "neg"},
            ),
        ],
        policy(reviewer={"max_rounds": 1}),
        pushed=CALC_AGAIN,
    ),
    "plan_rejected": Case(
        "plan_rejected",
        [
            PLAN,
            tool(
                "submit_review",
                subject=PLAN_ID,
                verdict="request_changes",
                summary="No tests planned.",
                findings=[{"severity": "blocker", "message": "no tests"}],
            ),
        ],
        policy(reviewer={"max_rounds": 1}),
        pushed=None,
    ),
    "reviewer_escalates": Case(
        "reviewer_escalated",
        [*PLANNED, WRITE, REPORT, review("escalate", "This changes a public API.")],
    ),
    "invalid_product": Case(
        "invalid_output",
        [*PLANNED, WRITE, CLAIMED_REPORT, CLAIMED_REPORT],  # claims a command it never ran
    ),
    "max_tokens_stop": Case(
        "max_tokens_stop",
        [
            *PLANNED,
            WRITE,
            {"content": [{"type": "text", "text": "and then"}], "stop_reason": "max_tokens"},
        ],
    ),
    "no_changes": Case("no_changes", [*PLANNED, REPORT], pushed=None),
    "terminal_step_failure": Case(
        "step_failed",  # someone pushes to the item's branch before the pipeline does
        [*PLANNED, WRITE, REPORT],
    ),
}


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHandle]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("escalations")
    source = write_source(tmp / "source")
    with running_forge(default_spec(source=source), data_dir=tmp / "forge") as handle:
        yield handle


def push_someone_elses_commit(bot: ForgeBot, issue: int, tmp: Path) -> str:
    """A human pushes a commit of their own to the item's branch (not from its worktree)."""
    spec = RepositorySpec(REPO, f"{bot.forge.base_url}/{REPO}.git")
    human = Workspace(tmp / "human", Identity("Human", "human@example.com"))
    tree = human.create_worktree(spec, issue, bot.titles[issue], "main", bot.tokens.token())
    assert tree.branch == bot.branch(issue)
    (tree.path / "NOTES.md").write_text("a human was here\n")
    assert human.commit_all(spec, tree, "a human's commit") is not None
    return human.push_branch(spec, tree, bot.tokens.token())


def executor_calls(bot: ForgeBot) -> int:
    with bot.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(AgentStep).where(AgentStep.role == "executor")
            ).scalar_one()
        )


def recorded_spend(bot: ForgeBot) -> tuple[int, float]:
    with bot.engine.connect() as conn:
        row = conn.execute(
            select(
                func.sum(AgentRun.input_tokens + AgentRun.output_tokens),
                func.sum(AgentRun.cost_usd),
            )
        ).one()
    return int(row[0]), float(row[1])


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_escalation_on_the_forge(forge: ForgeHandle, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    with forge_bot(forge, tmp_path / "bot", case.script, case.policy, tick=case.tick) as bot:
        issue = bot.new_issue(f"escalation {name}")
        bot.label(issue, "bob", f"label-{name}")
        human_sha = None
        if name == "terminal_step_failure":
            bot.drain(until=lambda: bot.item(issue).state is WorkState.PR_OPEN)
            human_sha = push_someone_elses_commit(bot, issue, tmp_path)
        bot.drain()

        item = bot.item(issue)
        history = [(t.to_state.value, t.reason) for t in item.history]
        assert item.state is WorkState.ESCALATED, history
        assert item.escalation_reason == case.reason, history
        assert [kind for kind, _ in bot.failed_jobs()] == [], bot.failed_jobs()
        if name == "terminal_step_failure":
            assert item.exit_reason is not None
            assert "PushAndOpenPr" in item.exit_reason
            assert "does not descend" in item.exit_reason

        # the label and ONE escalation comment (besides the sticky status comment)
        issue_now = bot.github.get_issue(REPO, issue)
        assert "needs-human" in issue_now.labels
        comments = bot.github.list_issue_comments(REPO, issue)
        escalations = [c for c in comments if "**Spend:**" in c.body]
        assert len(escalations) == 1, [c.body[:200] for c in comments]
        (comment,) = escalations
        assert comment.author.login == "trunkline[bot]"
        key = re.escape(marker(f"agents.escalated.{case.reason}.RUN")).replace(
            "RUN", r"run1\.v[0-9]+"
        )
        assert re.match(key, comment.body), comment.body[:200]
        assert f"escalated ({case.reason})" in comment.body
        limits = case.policy.agents.budget
        spend_line = f"{item.spend.tokens} of {limits.tokens} tokens"
        assert spend_line in comment.body
        assert "**Next steps:**" in comment.body
        assert NOTIFY_LINE in comment.body

        # the work so far on the item's branch (a fast-forward of main), never forced
        branch_sha = bot.branch_sha(issue)
        if human_sha is not None:
            assert branch_sha == human_sha  # the human's commit stays; nothing was forced
            assert "was refused" in comment.body
        elif case.pushed is None:
            assert branch_sha is None
            assert "was not pushed" in comment.body
        else:
            assert branch_sha is not None
            assert f"`{bot.branch(issue)}` at `{branch_sha[:12]}`" in comment.body
            content = bot.github.get_file(REPO, "src/calc.py", branch_sha)
            assert content is not None
            assert content.text == case.pushed
            main = bot.github.get_ref(REPO, "heads/main").sha
            assert bot.github.compare_commits(REPO, branch_sha, main) == ()  # descends from main

        # budgets: the spend recorded never exceeds the cap
        if case.tokens_cap is not None:
            assert 0 < item.spend.tokens <= case.tokens_cap
        if case.usd_cap is not None:
            assert Decimal(0) < item.spend.usd <= case.usd_cap

        if name == "max_turns":  # the looping executor made exactly max_turns model calls
            assert executor_calls(bot) == case.policy.agents.executor.max_turns == 3
        if case.tokens_cap is not None or case.usd_cap is not None:
            # the recorded runs add up to the item's spend: nothing spent off the books
            tokens, usd = recorded_spend(bot)
            assert tokens == item.spend.tokens
            assert usd == pytest.approx(float(item.spend.usd))

        if name == "review_rounds":
            assert item.pr is not None
            # round 1: a line comment at the finding's path and line
            lines = [(c["path"], c["line"]) for c in bot.review_comments(item.pr)]
            assert lines == [("src/calc.py", 2)]
            # round 2: the finding is off the diff; the review is kept, the finding listed
            bodies = [r.body for r in bot.github.list_reviews(REPO, item.pr)]
            assert len(bodies) == 2
            assert "`tests/test_calc.py:5`" in bodies[1]
