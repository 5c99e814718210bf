"""A work item's lease holder in its own process, making the pipeline's writes under the lease.

Run as `python pipeline_paused_holder.py DB_URL REMOTE_URL REPO ISSUE TITLE DATA_DIR TTL`
with the installation token in `HOLDER_TOKEN`. It takes the item's lease on `default`
(`issue-<n>`, `TTL` seconds), commits a change in the item's worktree, reads the branch as
it found it, prints `ready <epoch>` and waits for `go <awaited command key>` on stdin. Then
it makes the writes the pipeline makes under the lease, with the same code: the branch push
(`item_leases.check` right before `branch_push.push_expecting`) and the executor's result
(`PipelineService.submit(..., fence=...)`), and prints one line per write: `wrote push <sha>`
or `stale push`, `wrote submit` or `stale submit`. Exits 0.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from trunkline.clock import SystemClock
from trunkline.locks.fencing import StaleLease
from trunkline.locks.leases import Grant, LockManager
from trunkline.pipeline import events as ev
from trunkline.pipeline.branch_push import observed_branch_sha, push_expecting
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.item_leases import check, fence_for
from trunkline.pipeline.runner import PipelineService
from trunkline.store.engine import make_engine
from trunkline.workspace.model import Identity, RepositorySpec, slugify
from trunkline.workspace.workspace import Workspace


def main(argv: list[str]) -> int:
    url, remote, repo, issue_text, title, data_dir, ttl_text = argv
    issue = int(issue_text)
    token = os.environ["HOLDER_TOKEN"]
    engine = make_engine(url)
    locks = LockManager(engine)
    holder = f"issue-{issue}"
    grant = locks.acquire(repo, holder, {"default": 1}, timedelta(seconds=float(ttl_text)))
    assert isinstance(grant, Grant), grant
    fence = fence_for(locks, repo, holder, ["default"])
    assert fence is not None
    spec = RepositorySpec(repo, remote)
    workspace = Workspace(Path(data_dir), Identity("trunkline[bot]", "bot@example.com"))
    tree = workspace.create_worktree(spec, issue, slugify(title), "main", token)
    expected = observed_branch_sha(workspace, spec, tree.branch)
    (tree.path / "src" / "calc.py").write_text("def add(a, b):\n    return a + b  # paused\n")
    assert workspace.commit_all(spec, tree, "the paused holder's change") is not None
    print(f"ready {grant.epochs['default']}", flush=True)

    command = sys.stdin.readline().split()
    assert command[:1] == ["go"], command
    awaited = command[1]
    try:
        check(engine, fence)  # right before the push, as PushAndOpenPr does
        sha = push_expecting(workspace, spec, tree, token, expected)
        print(f"wrote push {sha}", flush=True)
    except StaleLease:
        print("stale push", flush=True)
    service = PipelineService(engine, SystemClock(), lambda _repo: PipelineConfig())
    try:
        service.submit(
            repo,
            issue,
            ev.ExecutionDone(awaited, ev.ExecutionKind.COMPLETED),
            fence=fence,
        )
        print("wrote submit", flush=True)
    except StaleLease:
        print("stale submit", flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
