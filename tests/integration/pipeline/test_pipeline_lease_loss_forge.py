"""An item that lost its leases writes nothing under them and escalates with `lease_lost`;
an item that holds them keeps them alive. On the local forge with the production
composition (see pipeline_forge_rig)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pipeline_forge_rig import (
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
from sqlalchemy import select

from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.locks.leases import Grant
from trunkline.pipeline.composition import LOCK_TTL
from trunkline.pipeline.item_leases import renew_held_leases
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.tables import AgentRun

SCRIPT = [
    tool(
        "submit_plan",
        summary="Fix add() so it adds.",
        steps=["Change the operator"],
        paths=["src/calc.py"],
        acceptance_criteria=["add(2, 3) == 5"],
        tests_to_run=["pytest -q"],
        risk_notes=[],
    ),
    tool("submit_review", subject=PLAN_ID, verdict="approve", summary="ok"),
    tool("write_file", path="src/calc.py", content="def add(a, b):\n    return a + b\n"),
    tool("submit_report", summary="Fixed the operator."),
    tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="good"),
]


def policy() -> Policy:
    return Policy.model_validate(
        {"version": 1, "agents": {"commands": [PYTEST]}, "queue": {"required_checks": ["ci"]}}
    )


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHandle]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("lease-loss")
    with running_forge(
        default_spec(source=write_source(tmp / "source")), data_dir=tmp / "forge"
    ) as handle:
        yield handle


def take_the_lease(bot: ForgeBot, issue: int) -> Grant:
    """The item's lease is gone (released behind its back) and another item holds it."""
    bot.locks.release(REPO, f"issue-{issue}")
    other = bot.locks.acquire(REPO, "issue-999", {"default": 1}, timedelta(minutes=5))
    assert isinstance(other, Grant)
    return other


def pulls_from(bot: ForgeBot, branch: str) -> list[int]:
    response = httpx.get(
        f"{bot.forge.api_url}/repos/{REPO}/pulls",
        params={"state": "all"},
        headers={"Authorization": f"token {bot.forge.token('alice')}"},
        timeout=30,
    )
    response.raise_for_status()
    return [int(p["number"]) for p in response.json() if p["head"]["ref"] == branch]


def roles(bot: ForgeBot) -> list[str]:
    with bot.engine.connect() as conn:
        return list(conn.execute(select(AgentRun.role).order_by(AgentRun.id)).scalars())


@pytest.mark.parametrize("stage", [WorkState.EXECUTING, WorkState.PR_OPEN])
def test_pipeline_a_step_whose_lease_was_lost_writes_nothing(
    forge: ForgeHandle, tmp_path: Path, stage: WorkState
) -> None:
    with forge_bot(forge, tmp_path, SCRIPT, policy()) as bot:
        issue = bot.new_issue(f"lease lost while {stage.value}")
        bot.label(issue, "bob", f"label-{stage.value}")
        bot.drain(until=lambda: bot.item(issue).state is stage)
        assert bot.item(issue).state is stage
        runs_before = roles(bot)
        take_the_lease(bot, issue)

        bot.drain()

        item = bot.item(issue)
        assert item.state is WorkState.ESCALATED, item.history
        assert item.escalation_reason == "lease_lost"
        assert item.pr is None
        assert pulls_from(bot, bot.branch(issue)) == []  # no pull request was opened
        assert roles(bot) == runs_before  # no agent ran after the loss
        if stage is WorkState.EXECUTING:
            assert bot.branch_sha(issue) is None  # nothing was pushed
        # (at pr_open the escalation pushes the work so far after the item let go of its
        # leases: the item's own branch, as a compare-and-swap)
        comments = [c.body for c in bot.github.list_issue_comments(REPO, issue)]
        assert any("escalated (lease_lost)" in body and "**Spend:**" in body for body in comments)
        # the other holder keeps the lease
        assert [lease.holder for lease in bot.locks.held(REPO, "issue-999")] == ["issue-999"]


def test_pipeline_keepalive_renews_the_leases_of_a_waiting_item(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    with forge_bot(forge, tmp_path, SCRIPT, policy()) as bot:
        issue = bot.new_issue("lease kept alive")
        bot.label(issue, "bob", "label-keepalive")
        bot.drain()
        item = bot.item(issue)
        assert item.state is WorkState.QUEUED_FOR_MERGE, item.history
        (lease,) = bot.locks.held(REPO, f"issue-{issue}")
        # taken for the short lock_ttl, not for hours
        assert lease.expires_at - lease.acquired_at <= LOCK_TTL + timedelta(seconds=1)

        assert renew_held_leases(bot.service.items(REPO), bot.locks, timedelta(hours=1)) == 1

        (renewed,) = bot.locks.held(REPO, f"issue-{issue}")
        assert renewed.epoch == lease.epoch
        assert renewed.expires_at > lease.expires_at + timedelta(minutes=30)
