"""The redacting GitHub port: every free text it writes is redacted, reads pass through, and
callers comparing what they built with what GitHub holds stay idempotent."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine

from trunkline.agents.redaction import REDACTED, Redactor
from trunkline.bot.check_reports import CheckContent, post_check
from trunkline.github.fake import FakeGitHub
from trunkline.github.model import (
    CheckConclusion,
    CheckRunOutput,
    CheckRunRequest,
    CheckRunUpdate,
    MergeMethod,
    ReviewEvent,
    ReviewLineComment,
)
from trunkline.github.port import GitHubPort
from trunkline.github.redacting import PLAIN_WRITES, READS, RedactingGitHub
from trunkline.locks.leases import LockManager
from trunkline.pipeline import commands as cmd
from trunkline.pipeline.model import ReviewNote, Verdict, WorkItem
from trunkline.pipeline.performers import GitHubPerformers
from trunkline.pipeline.runner import CommandContext
from trunkline.pipeline.states import WorkState

REPO = "acme/widgets"
SECRET = "operator-secret-value-0123"
TOKEN = "ghs_" + "Ab-_" * 9  # a forge-format installation token
LEAK = f"failed with {SECRET} and {TOKEN}"
SHA = "c" * 40


class Recorder:
    """Stands in for the wrapped port: records every call's name and arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return args[0] if name == "as_written" else None

        return record


def port_methods() -> set[str]:
    return {
        name
        for name, value in vars(GitHubPort).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


# Every port method that writes free text, called with secret-bearing text everywhere.
TEXT_WRITES: dict[str, Callable[[GitHubPort], object]] = {
    "create_comment": lambda g: g.create_comment(REPO, 1, LEAK),
    "edit_comment": lambda g: g.edit_comment(REPO, 5, LEAK),
    "upsert_sticky_comment": lambda g: g.upsert_sticky_comment(REPO, 1, "status", LEAK),
    "create_check_run": lambda g: g.create_check_run(
        REPO,
        CheckRunRequest(
            name="trunkline/queue", head_sha=SHA, output=CheckRunOutput(LEAK, LEAK, LEAK)
        ),
    ),
    "update_check_run": lambda g: g.update_check_run(
        REPO, 9, CheckRunUpdate(output=CheckRunOutput(LEAK, LEAK, LEAK))
    ),
    "create_pull": lambda g: g.create_pull(
        REPO, title=LEAK, head="trunkline/issue-1-x", base="main", body=LEAK
    ),
    "merge_pull": lambda g: g.merge_pull(
        REPO, 2, sha=SHA, method=MergeMethod.SQUASH, commit_title=LEAK, commit_message=LEAK
    ),
    "create_review": lambda g: g.create_review(
        REPO,
        2,
        commit_sha=SHA,
        event=ReviewEvent.COMMENT,
        body=LEAK,
        comments=[ReviewLineComment("a.py", 3, LEAK)],
    ),
}


def test_every_port_method_is_a_read_a_plain_write_or_a_redacted_write() -> None:
    # A new port method must be classified (and, if it writes text, redacted) before it ships.
    methods = port_methods()
    assert not READS & PLAIN_WRITES
    assert not (READS | PLAIN_WRITES) & set(TEXT_WRITES)
    assert methods == READS | PLAIN_WRITES | set(TEXT_WRITES)
    for name in methods:
        assert name in vars(RedactingGitHub), f"RedactingGitHub does not implement {name}"


@pytest.mark.parametrize("name", sorted(TEXT_WRITES))
def test_every_text_write_reaches_github_redacted(name: str) -> None:
    inner = Recorder()
    TEXT_WRITES[name](RedactingGitHub(inner, Redactor.of([SECRET])))
    [(called, args, kwargs)] = inner.calls
    assert called == name
    written = repr((args, kwargs))
    assert SECRET not in written
    assert TOKEN not in written
    assert written.count(REDACTED) >= 2


@pytest.mark.parametrize("name", sorted(PLAIN_WRITES | READS - {"as_written"}))
def test_reads_and_plain_writes_pass_their_arguments_through(name: str) -> None:
    inner = Recorder()
    port = RedactingGitHub(inner, Redactor.of([SECRET]))
    method = getattr(port, name)
    parameters = list(inspect.signature(method).parameters.values())
    samples = {"repo": REPO, "labels": ["agent"], "state": "open", "reason": "completed"}
    args = [
        samples.get(p.name, 7 if p.annotation in ("int", int) else f"value-{p.name}")
        for p in parameters
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]
    kwargs = {
        p.name: f"value-{p.name}" if p.annotation == "str" else p.default
        for p in parameters
        if p.kind is p.KEYWORD_ONLY
    }
    method(*args, **kwargs)
    [(called, passed_args, passed_kwargs)] = inner.calls
    assert called == name
    assert list(passed_args) == args
    assert passed_kwargs == kwargs


def test_as_written_is_the_redacted_text() -> None:
    port = RedactingGitHub(FakeGitHub(), Redactor.of([SECRET]))
    assert port.as_written(LEAK) == f"failed with {REDACTED} and {REDACTED}"
    assert FakeGitHub().as_written(LEAK) == LEAK


def test_post_check_is_idempotent_through_the_redacting_port() -> None:
    fake = FakeGitHub()
    fake.add_repo(REPO, root_sha=SHA)
    github = RedactingGitHub(fake, Redactor.of([SECRET]))
    content = CheckContent("trunkline/gate", CheckConclusion.FAILURE, "Gate", LEAK)
    first = post_check(github, REPO, SHA, content, "trunkline[bot]")
    assert SECRET not in (first.summary or "")
    again = post_check(github, REPO, SHA, content, "trunkline[bot]")
    assert again.id == first.id
    assert fake.calls_of("update_check_run") == []
    assert len(fake.calls_of("create_check_run")) == 1


def test_post_review_is_idempotent_through_the_redacting_port() -> None:
    fake = FakeGitHub()
    fake.add_repo(REPO, root_sha="a" * 40)
    pull = fake.add_pull(REPO, head_ref="trunkline/issue-1-x", head_sha=SHA)
    github = RedactingGitHub(fake, Redactor.of([SECRET]))
    performers = GitHubPerformers(
        lambda installation: github,
        lambda repo: pytest.fail("no policy is read"),
        LockManager(create_engine("sqlite://")),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    item = WorkItem(REPO, 1, WorkState.REVIEWING, "maya", now, now, pr=pull.number)
    context = CommandContext(REPO, 1, 7, item, attempt=1, last_attempt=False)
    command = cmd.PostReview(
        key=f"{REPO}#1:run1:v5:post-review",
        item=f"{REPO}#1",
        pr=pull.number,
        sha=SHA,
        verdict=Verdict.REQUEST_CHANGES,
        findings=1,
        summary=f"the test printed {SECRET}",
        notes=(ReviewNote("a.py", 3, f"leaks {TOKEN}"),),
    )
    performers.post_review(command, context)
    performers.post_review(command, context)  # a repeated delivery of the job
    [review] = fake.list_reviews(REPO, pull.number)
    assert SECRET not in review.body
    assert REDACTED in review.body
    assert len(fake.calls_of("create_review")) == 1
