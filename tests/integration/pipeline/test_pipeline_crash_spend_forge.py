"""A role run whose replica dies mid-call, again and again, on the production composition.

The forge over HTTP and git, SQLite, the scripted provider behind a wrapper that makes each
second call "die" after the provider answered (the API charged; the process never saw the
answer): the job is retried, each retry is a new run of the same command. What the dead runs
spent is carried by the role run's claim into the next run, so the item's USD cap stops the
crash loop (`budget_usd`) instead of every retry paying again from the item's last report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pipeline_forge_rig import REPO, ForgeBot, forge_bot, tool, write_source
from prerequisites import require_bwrap
from sqlalchemy import update

from trunkline.agents.messages import ModelRequest, ModelResponse, Provider
from trunkline.agents.work_item_rows import ItemRef, read_data
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.tables import Job, JobState

READ = {
    **tool("read_file", path="src/calc.py"),
    "usage": {"input_tokens": 20_000, "output_tokens": 0},
}
PRICE_INPUT = Decimal(3) / 1_000_000  # the rig's price of an input token
USD_CAP = Decimal("0.5")


class ReplicaDiedError(RuntimeError):
    """Stands for the process dying between the API's answer and its bookkeeping."""


@dataclass
class DyingProvider:
    """Forwards every call; every second call of the `dying` role raises after the provider
    answered."""

    inner: Provider
    dying: str
    answered: list[ModelResponse] = field(default_factory=list)
    read_noted: Callable[[], Decimal] | None = None  # the claim's noted spend, at each death
    noted: list[Decimal] = field(default_factory=list)

    def complete(self, request: ModelRequest) -> ModelResponse:
        response = self.inner.complete(request)
        if request.purpose != self.dying:
            return response
        self.answered.append(response)
        if len(self.answered) % 2 == 0:
            if self.read_noted is not None:
                self.noted.append(self.read_noted())
            raise ReplicaDiedError("the replica died before it saw the answer")
        return response

    def max_call_seconds(self) -> float:
        return self.inner.max_call_seconds()

    def charged_usd(self) -> Decimal:
        return sum((Decimal(r.usage.input_tokens) * PRICE_INPUT for r in self.answered), Decimal(0))


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHandle]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("crash-spend")
    source = write_source(tmp / "source")
    with running_forge(default_spec(source=source), data_dir=tmp / "forge") as handle:
        yield handle


def retry_until_settled(bot: ForgeBot, issue: int, rounds: int = 12) -> None:
    """Run jobs; make backed-off retries due at once (the retries without their waits)."""
    for _ in range(rounds):
        bot.drain()
        if bot.item(issue).state is WorkState.ESCALATED:
            bot.drain()
            return
        with bot.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.state == JobState.QUEUED)
                .values(run_at=datetime.now(UTC) - timedelta(seconds=1))
            )


PLAN = {
    **tool(
        "submit_plan",
        summary="Fix add() so it adds.",
        steps=["Change the operator in src/calc.py"],
        paths=["src/calc.py"],
        acceptance_criteria=["add(2, 3) == 5"],
        tests_to_run=["pytest -q"],
        risk_notes=[],
    ),
    "usage": {"input_tokens": 10_000, "output_tokens": 0},
}


@pytest.mark.parametrize(
    ("dying", "script"),
    [("planner", [READ] * 30), ("plan_reviewer", [PLAN, *[READ] * 30])],
    ids=["planner", "plan-reviewer-after-a-paid-plan"],
)
def test_pipeline_a_crash_loop_stops_at_the_items_usd_cap(
    forge: ForgeHandle, tmp_path: Path, dying: str, script: list[dict[str, object]]
) -> None:
    policy = Policy.model_validate(
        {
            "version": 1,
            "agents": {"budget": {"usd": float(USD_CAP)}},
            "queue": {"required_checks": ["ci"]},
            "escalation": {"label": "needs-human"},
        }
    )
    wrapped: list[DyingProvider] = []
    before = Decimal(10_000) * PRICE_INPUT if dying == "plan_reviewer" else Decimal(0)

    def wrap(provider: Provider) -> Provider:
        wrapped.append(DyingProvider(provider, dying))
        return wrapped[0]

    with forge_bot(forge, tmp_path / "bot", script, policy, wrap_provider=wrap) as bot:
        issue = bot.new_issue("crash loop")

        def read_noted() -> Decimal:
            key = bot.item(issue).awaiting
            claim = read_data(bot.engine, ItemRef(REPO, issue))["role_runs"][key]
            return Decimal(claim["spent"]["usd"])

        wrapped[0].read_noted = read_noted
        bot.label(issue, "alice", "label-crash")
        retry_until_settled(bot, issue)

        item = bot.item(issue)
        history = [(t.to_state.value, t.reason) for t in item.history]
        assert item.state is WorkState.ESCALATED, history
        assert item.escalation_reason == "budget_usd", history
        (provider,) = wrapped
        charged = before + provider.charged_usd()  # the plan, when it was paid before
        calls = len(provider.answered)
        # the loop was stopped by the cap, long before the job ran out of attempts
        assert 2 <= calls < 8, calls
        assert charged <= USD_CAP
        # the item's spend counts every dead run (calls in flight at their worst case),
        # and what the item had spent before them once
        assert charged <= item.spend.usd <= USD_CAP
        assert item.spend.usd < charged + calls // 2 * Decimal("0.2")  # at most a worst case
        # (about $0.15 here) per dead call on top of what was charged
        # what the claim noted before the first dead call: this command's first call, exactly
        # (the item's earlier spend is not the command's: counting it would count it twice)
        assert provider.noted[0] == Decimal(20_000) * PRICE_INPUT
        assert provider.noted[1] > provider.noted[0]  # the second run carried the first's
        comments = " ".join(c.body for c in bot.github.list_issue_comments(REPO, issue))
        assert "escalated (budget_usd)" in comments
