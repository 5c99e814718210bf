"""Who holds the ownership locks of a pull request: the one PR -> lock holder mapping.

Performs database reads on the connection it is given. Locks are held by work items, named
`issue-<n>` after the issue the work item implements (the naming of `docs/locks.md`; a
human takeover renames the holder `human:<login>:issue-<n>` and releases are then the human's
business).
A PR belongs to the work item whose `work_items.pr_number` is that PR; a PR opened by a
person outside the pipeline has no work item and holds no locks (None).
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from trunkline.locks import holders
from trunkline.store.tables import WorkItem


def work_item_holder(issue_number: int) -> str:
    """The lock holder name of the work item for issue `issue_number`."""
    return holders.work_item_holder(issue_number)


def lock_holder_of_pr(conn: Connection, repo: str, pr: int) -> str | None:
    """The lock holder behind `pr` in `repo`, or None when no work item owns the PR."""
    issue = conn.execute(
        select(WorkItem.issue_number)
        .where(WorkItem.repo_full_name == repo, WorkItem.pr_number == pr)
        .order_by(WorkItem.id)
        .limit(1)
    ).scalar_one_or_none()
    return None if issue is None else work_item_holder(issue)
