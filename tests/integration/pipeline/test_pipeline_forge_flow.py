"""A labeled issue end to end on the local forge, with the scripted provider.

Real HTTP (the PyGithub adapter with App installation tokens), real git (workspace mirror,
the item's worktree, a push), the executor's `run_command` and the self-check under
bubblewrap, SQLite store, the production webhook handlers, runner, performers, lock manager
and merge-queue service. The planner, reviewers and executor are scripted. The bot is the
production composition: `build_service(settings, configure=configure_dispatch(...))`,
the policy read from the repository's `.github/trunkline.yml` on the forge.
"""

from __future__ import annotations

from collections.abc import Iterator
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

from trunkline.forge.testing import default_spec, running_forge
from trunkline.pipeline.states import WorkState

POLICY_YAML = f"""version: 1
agents:
  commands: ["{PYTEST}"]
queue:
  required_checks: [ci]
"""


SCRIPT = [
    tool(
        "submit_plan",
        summary="Fix add() so it adds.",
        steps=["Change the operator in src/calc.py", "Run the tests"],
        paths=["src/calc.py"],
        acceptance_criteria=["add(2, 3) == 5"],
        tests_to_run=["pytest -q"],
        risk_notes=[],
    ),
    tool("submit_review", subject=PLAN_ID, verdict="approve", summary="The plan is sound."),
    tool("write_file", path="src/calc.py", content=CALC_FIXED),
    tool("run_command", command=PYTEST),
    tool(
        "submit_report",
        summary="Fixed the operator in add().",
        files_changed=["src/calc.py"],
        commands_run=[{"command": PYTEST, "exit_code": 0}],
        open_questions=[],
    ),
    tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Correct and tested."),
]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ForgeBot]:
    """The production composition (`build_service` + `configure_dispatch`) on the forge, the
    policy read from the repository's `.github/trunkline.yml`."""
    require_bwrap()
    source = write_source(tmp_path / "source")
    (source / ".github").mkdir()
    (source / ".github" / "trunkline.yml").write_text(POLICY_YAML)
    with (
        running_forge(default_spec(source=source), data_dir=tmp_path / "forge") as forge,
        forge_bot(forge, tmp_path / "bot", SCRIPT, None) as bot,
    ):
        yield bot


def test_pipeline_forge_maintainers_label_ends_in_the_merge_queue(world: ForgeBot) -> None:
    issue = world.new_issue("add() subtracts")

    world.label(issue, "bob", "label-1")  # bob has write access
    world.label(issue, "bob", "label-1")  # the same delivery again
    world.drain()

    assert world.failed_jobs() == []
    item = world.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE, [
        (t.to_state.value, t.reason) for t in item.history
    ]
    assert item.pr is not None
    assert item.head_sha is not None
    # the PR links the issue and carries the plan, the risk and the spend
    pull = world.github.get_pull(REPO, item.pr)
    assert pull.head_sha == item.head_sha
    assert f"Closes #{issue}" in pull.body
    assert "Fix add() so it adds." in pull.body
    assert "## Risk:" in pull.body
    assert "tokens" in pull.body
    # the fix is on the branch, tested under bubblewrap by the self-check
    content = world.github.get_file(REPO, "src/calc.py", item.head_sha)
    assert content is not None
    assert content.text == CALC_FIXED
    # the reviewer's verdict is the App's review on the head, with the verdict marker
    reviews = world.github.list_reviews(REPO, item.pr)
    assert [(r.commit_sha, r.author.login) for r in reviews] == [(item.head_sha, "trunkline[bot]")]
    assert "trunkline:verdict=approve" in reviews[0].body
    # the merge queue got the Enqueue at the reviewed head
    queue = world.queue.state(REPO, "main")
    assert queue is not None
    entry = queue.entry(item.pr)
    assert entry is not None
    # one run per role, recorded against the item (the duplicate delivery started nothing)
    assert world.agent_roles() == ["planner", "plan_reviewer", "executor", "reviewer"]
    assert [lease.subsystem for lease in world.locks.held(REPO, f"issue-{issue}")] == ["default"]


def test_pipeline_forge_outsiders_label_gets_a_polite_comment(world: ForgeBot) -> None:
    issue = world.new_issue("please fix add()")

    world.label(issue, "carol", "label-carol")  # carol can only read
    world.drain()

    item = world.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.REFUSED
    assert world.agent_roles() == []  # no agent ran
    comments = world.github.list_issue_comments(REPO, issue)
    assert len(comments) == 1
    assert "@carol" in comments[0].body
    assert comments[0].author.login == "trunkline[bot]"
