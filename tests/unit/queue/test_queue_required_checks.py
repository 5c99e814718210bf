"""Which reports count for required checks, and the engine's re-verification and squash paths."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from trunkline.github.model import CheckConclusion as GitHubConclusion
from trunkline.github.model import CheckRun, CheckStatus, CommitStatus
from trunkline.queue import events as ev
from trunkline.queue.effects import BuildIntegration, ClosePull, Comment, Eject, FastForwardBase
from trunkline.queue.engine import initial_state, step
from trunkline.queue.model import (
    ALL_GATES,
    CheckConclusion,
    MergeMethod,
    OutcomeKind,
    QueueConfig,
    QueueState,
)
from trunkline.queue.required_checks import not_green, required_reports

NOW = datetime(2026, 5, 1, 9, tzinfo=UTC)
WAIT = timedelta(minutes=10)
SHA = "c" * 40
PINNED = QueueConfig(required_checks=("ci", "lint"), check_apps=(("lint", "github-actions"),))


def run(name: str, app: str, conclusion: str, run_id: int = 1) -> CheckRun:
    return CheckRun(
        run_id,
        name,
        SHA,
        CheckStatus.COMPLETED,
        GitHubConclusion(conclusion),
        app_slug=app,
        summary=f"{app} says {conclusion}",
    )


def test_a_pinned_check_counts_only_from_its_app_and_trunkline_never_counts() -> None:
    runs = (
        run("lint", "impostor", "success", 5),
        run("ci", "trunkline", "success", 6),
        run("lint", "github-actions", "failure", 2),
    )
    reports = required_reports(PINNED, runs, (), sha=SHA, own_app="trunkline")
    assert set(reports) == {"lint"}
    assert reports["lint"].conclusion is CheckConclusion.FAILURE
    problem = not_green(PINNED, reports)
    assert problem is not None
    assert "required check ci has no report" in problem
    assert "lint failure: github-actions says failure" in problem


def test_commit_statuses_count_by_context_but_not_for_a_pinned_check() -> None:
    statuses = (CommitStatus("ci", "success", "ok"), CommitStatus("lint", "success", "ok"))
    reports = required_reports(PINNED, (), statuses, sha=SHA, own_app="trunkline")
    assert set(reports) == {"ci"}
    assert reports["ci"].conclusion is CheckConclusion.SUCCESS
    green = required_reports(
        PINNED, (run("lint", "github-actions", "success"),), statuses, sha=SHA, own_app=None
    )
    assert not_green(PINNED, green) is None


def test_a_report_on_another_sha_never_counts() -> None:
    other = replace(run("ci", "ci-app", "success"), head_sha="d" * 40)
    assert required_reports(PINNED, (other,), (), sha=SHA, own_app=None) == {}


def _passed_batch(config: QueueConfig) -> tuple[QueueState, FastForwardBase]:
    state = initial_state("acme/app", config, "B0")
    for pr in (1, 2):
        state, _ = step(state, ev.Enqueue(pr, f"h{pr}"), NOW)
        reports = tuple(ev.GateReport(gate, True) for gate in ALL_GATES)
        state, effects = step(state, ev.GatesUpdated(pr, f"h{pr}", reports), NOW)
    (build,) = state.builds
    assert build.prs == (1, 2)
    state, _ = step(state, ev.IntegrationBuilt(build.build_id, "I12"), NOW)
    state, effects = step(state, ev.CheckCompleted("I12", "ci", CheckConclusion.SUCCESS), NOW)
    (forward,) = [e for e in effects if isinstance(e, FastForwardBase)]
    return state, forward


def test_checks_regressed_before_the_fast_forward_bisect_instead_of_merging() -> None:
    config = QueueConfig(required_checks=("ci",), batch_size=2, batch_wait=WAIT)
    state, forward = _passed_batch(config)
    state, effects = step(
        state, ev.ChecksRegressed(forward.build_id, "I12", "required check ci failure"), NOW
    )
    assert state.base_sha == "B0"
    assert not state.merged_prs
    builds = [e for e in effects if isinstance(e, BuildIntegration)]
    assert [b.prs for b in builds] == [((1, "h1"),)], "the first half is tested alone"
    again, more = step(state, ev.ChecksRegressed(forward.build_id, "I12", "late"), NOW)
    assert again is state
    assert more == ()


def test_a_squash_merge_closes_each_pr_and_names_the_commit() -> None:
    config = QueueConfig(
        required_checks=("ci",), batch_size=2, batch_wait=WAIT, merge_method=MergeMethod.SQUASH
    )
    state, forward = _passed_batch(config)
    state, effects = step(state, ev.FastForwarded(forward.build_id, "I12"), NOW)
    closed = [e for e in effects if isinstance(e, ClosePull)]
    assert [(c.pr, c.merged_sha) for c in closed] == [(1, "I12"), (2, "I12")]
    comments = [e.body for e in effects if isinstance(e, Comment)]
    assert all("Squashed into I12" in body for body in comments), comments
    assert not [e for e in effects if isinstance(e, Eject)]
    outcome = state.outcome(1)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.MERGED


def test_a_merge_method_merge_never_closes_prs() -> None:
    state, forward = _passed_batch(
        QueueConfig(required_checks=("ci",), batch_size=2, batch_wait=WAIT)
    )
    _, effects = step(state, ev.FastForwarded(forward.build_id, "I12"), NOW)
    assert not [e for e in effects if isinstance(e, ClosePull)]
