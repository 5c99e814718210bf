"""What happened in a demo run, read back from where it happened.

Performs I/O (read-only): the bot's store (work items, the lock history, approvals), the
forge's REST API (check runs, pull request files, the push log) and the forge's bare git
repository. Nothing here trusts the bot's own summary of the outcome:
- `main`: walked in git (first-parent chain since the seed commit); each commit's `ci` check
  run read from the forge; every position main ever had (the forge's push log) must be on
  that chain, so main only ever moved forward;
- `max_holders`: replayed from the lock history (`timeline_events` of kind `lock`, written in
  the same transaction as each grant and release);
- `approved_by`: the approval gate's own tally (`trunkline.queue.gates.tally_approvals`) over
  the recorded approvals of the merged head.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from trunkline.demo.forge_client import ForgeClient
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.store import list_items
from trunkline.policies.evaluation import Change, CompiledPolicy
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Policy
from trunkline.queue.gates import ApprovalSource, GateInputs, RecordedApproval, tally_approvals
from trunkline.store.tables import Approval, TimelineEvent


@dataclass(frozen=True)
class ItemFacts:
    issue: int
    title: str
    state: str
    pr: int | None
    risk: str | None
    subsystems: tuple[str, ...]
    merged_sha: str | None
    approved_by: tuple[str, ...]
    approvals_not_counted: tuple[str, ...]
    review_rounds: int
    spend_usd: float
    spend_tokens: int
    exit_reason: str | None
    issue_closed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "issue": self.issue,
            "title": self.title,
            "state": self.state,
            "pr": self.pr,
            "risk": self.risk,
            "subsystems": list(self.subsystems),
            "merged_sha": self.merged_sha,
            "approved_by": list(self.approved_by),
            "approvals_not_counted": list(self.approvals_not_counted),
            "review_rounds": self.review_rounds,
            "spend_usd": self.spend_usd,
            "spend_tokens": self.spend_tokens,
            "exit_reason": self.exit_reason,
            "issue_closed": self.issue_closed,
        }


@dataclass(frozen=True)
class MainFacts:
    sha: str
    linear: bool
    commits: int  # first-parent commits after the seed commit
    untested_commits: int
    untested: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sha": self.sha,
            "linear": self.linear,
            "commits": self.commits,
            "untested_commits": self.untested_commits,
            "untested": list(self.untested),
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class LockFacts:
    max_holders: dict[str, int]
    #: pairs of holders of different subsystems that held their locks at the same time
    overlaps: tuple[tuple[str, str], ...] = field(default=())
    events: int = 0


def read_items(engine: Engine, repo: str) -> dict[int, WorkItem]:
    with engine.connect() as conn:
        return {item.issue: item for item in list_items(conn, repo)}


def lock_facts(engine: Engine, repo: str) -> LockFacts:
    """Replay the lock history in commit order: the most holders of each subsystem at once,
    and which holders of different subsystems overlapped."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(TimelineEvent.data)
            .where(TimelineEvent.repo_full_name == repo, TimelineEvent.kind == "lock")
            .order_by(TimelineEvent.id)
        ).scalars()
        history = [dict(row or {}) for row in rows]
    slots: dict[tuple[str, int], str | None] = {}
    most: dict[str, int] = defaultdict(int)
    overlaps: set[tuple[str, str]] = set()
    for event in history:
        subsystem = str(event["subsystem"])
        slots[(subsystem, int(event["slot"]))] = event.get("holder")
        holders: dict[str, set[str]] = defaultdict(set)
        for (name, _), holder in slots.items():
            if holder is not None:
                holders[name].add(holder)
        for name, present in holders.items():
            most[name] = max(most[name], len(present))
        for name, present in holders.items():
            for other, theirs in holders.items():
                if name < other:
                    for a in present:
                        for b in theirs:
                            if a != b:
                                overlaps.add((min(a, b), max(a, b)))
        most.setdefault(subsystem, 0)
    return LockFacts(dict(sorted(most.items())), tuple(sorted(overlaps)), len(history))


def _git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _is_ancestor(git_dir: Path, older: str, newer: str) -> bool:
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "merge-base", "--is-ancestor", older, newer],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def main_facts(forge: ForgeClient, git_dir: Path, repo: str, check_name: str) -> MainFacts:
    tip = _git(git_dir, "rev-parse", "refs/heads/main")
    chain = _git(git_dir, "rev-list", "--first-parent", "refs/heads/main").split()
    roots = set(_git(git_dir, "rev-list", "--max-parents=0", "refs/heads/main").split())
    commits = [sha for sha in chain if sha not in roots]
    problems: list[str] = []
    untested = []
    for sha in commits:
        runs = forge.check_runs(repo, sha)
        if not any(
            run.get("name") == check_name and run.get("conclusion") == "success" for run in runs
        ):
            untested.append(sha)
    on_chain = set(chain)
    previous: str | None = None
    for push in forge.pushes(repo, "refs/heads/main"):
        after = str(push.get("after", ""))
        if push.get("forced"):
            problems.append(f"a forced push moved main to {after[:12]}")
        if after and after not in on_chain:
            problems.append(f"main was at {after[:12]}, which is not in its history now")
        if previous and after and not _is_ancestor(git_dir, previous, after):
            problems.append(f"main moved from {previous[:12]} to {after[:12]}, not forward")
        previous = after or previous
    return MainFacts(
        sha=tip,
        linear=not problems,
        commits=len(commits),
        untested_commits=len(untested),
        untested=tuple(untested),
        problems=tuple(problems),
    )


def merged_on_main(git_dir: Path, sha: str | None) -> bool:
    return bool(sha) and _is_ancestor(git_dir, str(sha), "refs/heads/main")


def approvals_of(engine: Engine, repo: str, pr: int) -> list[RecordedApproval]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Approval.user_login, Approval.sha, Approval.source).where(
                Approval.repo_full_name == repo,
                Approval.pr_number == pr,
                Approval.kind == "merge",
            )
        ).all()
    found = []
    for login, sha, source in rows:
        try:
            kind = ApprovalSource(source)
        except ValueError:
            continue
        found.append(RecordedApproval(user=login, sha=sha, source=kind))
    return found


def policy_at(forge: ForgeClient, repo: str, ref: str) -> Policy | None:
    text = forge.file_text(repo, ".github/trunkline.yml", ref)
    if text is None:
        return None
    loaded = load_policy(text, ".github/trunkline.yml")
    return loaded if isinstance(loaded, Policy) else None


def pull_change(git_dir: Path, head: str) -> Change | None:
    """What a merged pull request changed: from the merge base of its head with the main it
    was integrated into (the first parent of the integration commit whose second parent is
    the head) to the head. None when no integration commit on main merged `head`."""
    chain = _git(git_dir, "rev-list", "--first-parent", "--parents", "refs/heads/main")
    for line in chain.splitlines():
        shas = line.split()
        if len(shas) == 3 and shas[2] == head:
            base = _git(git_dir, "merge-base", shas[1], head)
            status = _git(git_dir, "diff", "--name-status", "--no-renames", base, head)
            changes = [row.split("\t", 1) for row in status.splitlines() if "\t" in row]
            numstat = _git(git_dir, "diff", "--numstat", "--no-renames", base, head)
            lines = sum(
                int(added) + int(removed)
                for added, removed, *_ in (row.split("\t") for row in numstat.splitlines())
                if added.isdigit() and removed.isdigit()
            )
            return Change(
                added=tuple(path for kind, path in changes if kind == "A"),
                modified=tuple(path for kind, path in changes if kind not in ("A", "D")),
                deleted=tuple(path for kind, path in changes if kind == "D"),
                lines_changed=lines,
            )
    return None


def approval_tally(
    forge: ForgeClient,
    engine: Engine,
    git_dir: Path,
    repo: str,
    item: WorkItem,
    bot_login: str,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(counted, not counted with why) for the item's PR at its head, as the gate sees it:
    the policy of main, the PR's change as git shows it, the recorded approvals of the head."""
    if item.pr is None or item.head_sha is None:
        return (), ()
    policy = policy_at(forge, repo, "main")
    change = pull_change(git_dir, item.head_sha)
    if policy is None or change is None:
        return (), ()
    evaluation = CompiledPolicy(policy).evaluate(change)
    tally = tally_approvals(
        GateInputs(
            pr=item.pr,
            head_sha=item.head_sha,
            evaluation=evaluation,
            held_subsystems=None,
            requester=forge.issue_author(repo, item.issue),  # as the gate runner reads it
            bot_login=bot_login,
            approvals=tuple(approvals_of(engine, repo, item.pr)),
        )
    )
    return tally.counted, tuple(reason for _, reason in tally.ignored)


def item_facts(
    forge: ForgeClient,
    engine: Engine,
    git_dir: Path,
    repo: str,
    issue: int,
    title: str,
    item: WorkItem | None,
    bot_login: str,
) -> ItemFacts:
    closed = forge.issue_state(repo, issue) == "closed"
    if item is None:
        return ItemFacts(issue, title, "not_started", None, None, (), None, (), (), 0, 0.0, 0,
                         None, closed)  # fmt: skip
    counted, ignored = approval_tally(forge, engine, git_dir, repo, item, bot_login)
    risk = item.risk
    return ItemFacts(
        issue=issue,
        title=title,
        state=item.state.value,
        pr=item.pr,
        risk=risk.level if risk else None,
        subsystems=tuple(risk.subsystems) if risk else (),
        merged_sha=item.merged_sha,
        approved_by=counted,
        approvals_not_counted=ignored,
        review_rounds=item.review_rounds,
        spend_usd=float(item.spend.usd.quantize(Decimal("0.000001"))),
        spend_tokens=item.spend.tokens,
        exit_reason=item.exit_reason or item.escalation_reason,
        issue_closed=closed,
    )


def subsystems_of(items: Iterable[ItemFacts]) -> set[str]:
    return {name for item in items for name in item.subsystems}
