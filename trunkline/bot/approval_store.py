"""Human approvals of PR head SHAs in the store's `approvals` table (kind `merge`).

`ApprovalStore` performs database I/O; `MemoryApprovals` is its in-memory double for tests.
A row is (repo, PR, SHA, user, source); the table's unique key
(repo, PR, SHA, user, kind) makes recording idempotent under at-least-once delivery: a second
`record` of the same approval is a no-op (`INSERT ... ON CONFLICT DO NOTHING`). Approvals are
bound to a SHA and never carry over to another one; a push simply leaves them behind.
`replace_reviews` makes the GitHub-review rows of a PR equal to what GitHub reports now
(level-triggered: a dropped `submitted` or `dismissed` webhook is healed by the next read).

Each row's decision time is `decided_at` (GitHub's clock: a `/trunkline approve` comment's
`created_at`), else its recording time `created_at`: a "changes requested" review withdraws
the approvals decided before it (`remove(..., before=)`), however late their job ran.

Head observations (rows of kind `head`, user "", source `observed`) remember when each head
SHA of a PR was seen, on GitHub's clock (`pull.updated_at`: the head cannot have changed
since), so `/trunkline approve` can bind an approval to the head that was current when the
comment was written. One row per (PR, SHA) keeps the start of the SHA's latest known run:
`observe_head` moves it later when another head was observed in between. `head_since(sha)` is
that start, or None when another head was observed at or after it (the order is unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, select, update

from trunkline.queue.gates import ApprovalSource, RecordedApproval
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.tables import Approval

MERGE_KIND = "merge"
HEAD_KIND = "head"
OBSERVED = "observed"  # the source of head observation rows (user "")
_KEY = ("repo_full_name", "pr_number", "sha", "user_login", "kind")


class ApprovalRecords(Protocol):
    """The approvals a `GateRunner` reads and writes (`ApprovalStore`, `MemoryApprovals`)."""

    def record(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource,
        *,
        decided_at: datetime | None = None,
    ) -> bool: ...

    def remove(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource | None = None,
        *,
        before: datetime | None = None,
    ) -> int: ...

    def replace_reviews(self, repo: str, pr: int, current: Iterable[tuple[str, str]]) -> None: ...

    def approvals(self, repo: str, pr: int) -> tuple[RecordedApproval, ...]: ...

    def observe_head(self, repo: str, pr: int, sha: str, at: datetime) -> None: ...

    def head_since(self, repo: str, pr: int, sha: str) -> datetime | None: ...


def next_observation(runs: dict[str, datetime], sha: str, at: datetime) -> datetime:
    """The start of `sha`'s latest known run after observing it at `at` (pure)."""
    old = runs.get(sha)
    if old is None:
        return at
    low, high = min(old, at), max(old, at)
    between = any(low <= t <= high for other, t in runs.items() if other != sha)
    return high if between else low


def run_start(runs: dict[str, datetime], sha: str) -> datetime | None:
    """When `sha` became the head at the latest, if no other head was seen since (pure)."""
    since = runs.get(sha)
    if since is None or any(t >= since for other, t in runs.items() if other != sha):
        return None
    return since


class ApprovalStore:
    """`ApprovalRecords` in the store's `approvals` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource,
        *,
        decided_at: datetime | None = None,
    ) -> bool:
        """Record `user`'s approval of `sha`, decided at `decided_at` (GitHub's clock; None:
        unknown, the recording time stands in); False when it was already recorded."""
        with self.engine.begin() as conn:
            row = _row(repo, pr, sha, user, source, database_now(conn))
            return insert_ignoring_conflicts(
                conn,
                Approval.__table__,  # type: ignore[arg-type]
                {**row, "decided_at": decided_at},
                _KEY,
            )

    def remove(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource | None = None,
        *,
        before: datetime | None = None,
    ) -> int:
        """Delete `user`'s approval of `sha` (only one from `source`, if given; only one
        decided at or before `before`, if given: a later approval is a later decision). The
        decision time is `decided_at` (GitHub's clock), else the recording time."""
        conditions = [
            Approval.repo_full_name == repo,
            Approval.pr_number == pr,
            Approval.sha == sha,
            Approval.user_login == user,
            Approval.kind == MERGE_KIND,
        ]
        if source is not None:
            conditions.append(Approval.source == source.value)
        if before is not None:
            conditions.append(func.coalesce(Approval.decided_at, Approval.created_at) <= before)
        with self.engine.begin() as conn:
            return conn.execute(delete(Approval).where(and_(*conditions))).rowcount

    def replace_reviews(self, repo: str, pr: int, current: Iterable[tuple[str, str]]) -> None:
        """Make the PR's GitHub-review approvals exactly `current` ((sha, user) pairs)."""
        wanted = set(current)
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(Approval.id, Approval.sha, Approval.user_login).where(
                    Approval.repo_full_name == repo,
                    Approval.pr_number == pr,
                    Approval.kind == MERGE_KIND,
                    Approval.source == ApprovalSource.GITHUB_REVIEW.value,
                )
            ).all()
            have = {(row.sha, row.user_login): row.id for row in rows}
            gone = [row_id for key, row_id in have.items() if key not in wanted]
            if gone:
                conn.execute(delete(Approval).where(Approval.id.in_(gone)))
            now = database_now(conn)
            for sha, user in sorted(wanted - have.keys()):
                insert_ignoring_conflicts(
                    conn,
                    Approval.__table__,  # type: ignore[arg-type]
                    _row(repo, pr, sha, user, ApprovalSource.GITHUB_REVIEW, now),
                    _KEY,
                )

    def approvals(self, repo: str, pr: int) -> tuple[RecordedApproval, ...]:
        """Every merge approval of the PR (any SHA), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Approval.user_login, Approval.sha, Approval.source)
                .where(
                    Approval.repo_full_name == repo,
                    Approval.pr_number == pr,
                    Approval.kind == MERGE_KIND,
                )
                .order_by(Approval.id)
            ).all()
        return tuple(
            RecordedApproval(row.user_login, row.sha, ApprovalSource(row.source)) for row in rows
        )

    def observe_head(self, repo: str, pr: int, sha: str, at: datetime) -> None:
        """Record that `sha` was the PR's head at `at` (GitHub's clock)."""
        with self.engine.begin() as conn:
            runs = _head_runs(conn, repo, pr)
            start = next_observation(runs, sha, at)
            if sha not in runs:
                row = _row(repo, pr, sha, "", ApprovalSource.COMMAND, start)
                insert_ignoring_conflicts(
                    conn,
                    Approval.__table__,  # type: ignore[arg-type]
                    {**row, "source": OBSERVED, "kind": HEAD_KIND},
                    _KEY,
                )
            elif start != runs[sha]:
                conn.execute(
                    update(Approval)
                    .where(*_head_rows(repo, pr), Approval.sha == sha)
                    .values(created_at=start)
                )

    def head_since(self, repo: str, pr: int, sha: str) -> datetime | None:
        with self.engine.connect() as conn:
            return run_start(_head_runs(conn, repo, pr), sha)


def _head_rows(repo: str, pr: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Approval.repo_full_name == repo,
        Approval.pr_number == pr,
        Approval.kind == HEAD_KIND,
        Approval.user_login == "",
    )


def _head_runs(conn: Connection, repo: str, pr: int) -> dict[str, datetime]:
    rows = conn.execute(select(Approval.sha, Approval.created_at).where(*_head_rows(repo, pr)))
    return {row.sha: row.created_at for row in rows}


def _row(
    repo: str, pr: int, sha: str, user: str, source: ApprovalSource, now: datetime
) -> dict[str, object]:
    return {
        "repo_full_name": repo,
        "pr_number": pr,
        "sha": sha,
        "user_login": user,
        "source": source.value,
        "kind": MERGE_KIND,
        "created_at": now,
    }


class MemoryApprovals:
    """`ApprovalRecords` in memory with the table's semantics (for tests and models): one
    row per (repo, PR, SHA, user), the first source recorded is kept."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.rows: list[tuple[str, int, str, str, ApprovalSource]] = []
        self.recorded_at: dict[tuple[str, int, str, str, ApprovalSource], datetime] = {}
        self.heads: dict[tuple[str, int], dict[str, datetime]] = {}
        self.clock = clock

    def record(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource,
        *,
        decided_at: datetime | None = None,
    ) -> bool:
        if any(row[:4] == (repo, pr, sha, user) for row in self.rows):
            return False
        self.rows.append((repo, pr, sha, user, source))
        self.recorded_at[(repo, pr, sha, user, source)] = decided_at or self.clock()
        return True

    def remove(
        self,
        repo: str,
        pr: int,
        sha: str,
        user: str,
        source: ApprovalSource | None = None,
        *,
        before: datetime | None = None,
    ) -> int:
        def matches(row: tuple[str, int, str, str, ApprovalSource]) -> bool:
            if row[:4] != (repo, pr, sha, user) or (source is not None and row[4] is not source):
                return False
            return before is None or self.recorded_at.get(row, before) <= before

        keep = [row for row in self.rows if not matches(row)]
        removed = len(self.rows) - len(keep)
        self.rows = keep
        return removed

    def replace_reviews(self, repo: str, pr: int, current: Iterable[tuple[str, str]]) -> None:
        wanted = set(current)
        review = ApprovalSource.GITHUB_REVIEW
        self.rows = [
            row
            for row in self.rows
            if row[:2] != (repo, pr) or row[4] is not review or (row[2], row[3]) in wanted
        ]
        for sha, user in sorted(wanted):
            self.record(repo, pr, sha, user, review)

    def approvals(self, repo: str, pr: int) -> tuple[RecordedApproval, ...]:
        return tuple(
            RecordedApproval(user, sha, source)
            for (r, p, sha, user, source) in self.rows
            if (r, p) == (repo, pr)
        )

    def observe_head(self, repo: str, pr: int, sha: str, at: datetime) -> None:
        runs = self.heads.setdefault((repo, pr), {})
        runs[sha] = next_observation(runs, sha, at)

    def head_since(self, repo: str, pr: int, sha: str) -> datetime | None:
        return run_start(self.heads.get((repo, pr), {}), sha)
