"""Human approvals of PR head SHAs in the store's `approvals` table (kind `merge`).

`ApprovalStore` performs database I/O; `MemoryApprovals` is its in-memory double for tests.
A row is (repo, PR, SHA, user, source); the table's unique key
(repo, PR, SHA, user, kind) makes recording idempotent under at-least-once delivery: a second
`record` of the same approval is a no-op (`INSERT ... ON CONFLICT DO NOTHING`). Approvals are
bound to a SHA and never carry over to another one; a push simply leaves them behind.
`replace_reviews` makes the GitHub-review rows of a PR equal to what GitHub reports now
(level-triggered: a dropped `submitted` or `dismissed` webhook is healed by the next read).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, and_, delete, select

from trunkline.queue.gates import ApprovalSource, RecordedApproval
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.tables import Approval

MERGE_KIND = "merge"
_KEY = ("repo_full_name", "pr_number", "sha", "user_login", "kind")


class ApprovalRecords(Protocol):
    """The approvals a `GateRunner` reads and writes (`ApprovalStore`, `MemoryApprovals`)."""

    def record(self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource) -> bool: ...

    def remove(
        self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource | None = None
    ) -> int: ...

    def replace_reviews(self, repo: str, pr: int, current: Iterable[tuple[str, str]]) -> None: ...

    def approvals(self, repo: str, pr: int) -> tuple[RecordedApproval, ...]: ...


class ApprovalStore:
    """`ApprovalRecords` in the store's `approvals` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource) -> bool:
        """Record `user`'s approval of `sha`; False when it was already recorded."""
        with self.engine.begin() as conn:
            return insert_ignoring_conflicts(
                conn,
                Approval.__table__,  # type: ignore[arg-type]
                _row(repo, pr, sha, user, source, database_now(conn)),
                _KEY,
            )

    def remove(
        self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource | None = None
    ) -> int:
        """Delete `user`'s approval of `sha` (only one from `source`, if given)."""
        conditions = [
            Approval.repo_full_name == repo,
            Approval.pr_number == pr,
            Approval.sha == sha,
            Approval.user_login == user,
            Approval.kind == MERGE_KIND,
        ]
        if source is not None:
            conditions.append(Approval.source == source.value)
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

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, str, str, ApprovalSource]] = []

    def record(self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource) -> bool:
        if any(row[:4] == (repo, pr, sha, user) for row in self.rows):
            return False
        self.rows.append((repo, pr, sha, user, source))
        return True

    def remove(
        self, repo: str, pr: int, sha: str, user: str, source: ApprovalSource | None = None
    ) -> int:
        keep = [
            row
            for row in self.rows
            if row[:4] != (repo, pr, sha, user) or (source is not None and row[4] is not source)
        ]
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
