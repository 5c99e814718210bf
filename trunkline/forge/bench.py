"""`trunkline bench forge`: requests per second of a mixed read/write PyGithub workload.

Performs I/O (starts a forge in-process, talks to it over loopback HTTP). The workload
repeats: create an issue, label it, comment, read the issue, list issues (one page), read
the repository, read a file, create a commit status, read the combined status. Figures are
printed, never asserted.
"""

from __future__ import annotations

import time
from typing import Any

from trunkline.forge.testing import running_forge


def run_benchmark(operations: int = 300) -> dict[str, Any]:
    from github import Auth, Github

    with running_forge() as forge:
        gh = Github(
            base_url=forge.api_url,
            auth=Auth.Token(forge.installation_token()),
            seconds_between_requests=0,
            seconds_between_writes=0,
        )
        repo = gh.get_repo("alice/demo")
        sha = forge_sha(forge)
        calls = 0
        started = time.perf_counter()
        i = 0
        while calls < operations:
            issue = repo.create_issue(title=f"bench {i}", body="load")
            issue.add_to_labels("bug")
            issue.create_comment("a comment")
            repo.get_issue(issue.number)
            repo.get_issues(state="open").get_page(0)
            gh.get_repo("alice/demo")
            repo.get_contents("README.md")
            repo.get_commit(sha).create_status(state="success", context="bench")
            repo.get_commit(sha).get_combined_status()
            calls += 11  # get_commit is one request each time
            i += 1
        elapsed = time.perf_counter() - started
        gh.close()
    return {
        "benchmark": "forge",
        "requests": calls,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(calls / elapsed, 1),
    }


def forge_sha(forge: Any) -> str:
    from trunkline.forge import gitrepo

    refs = gitrepo.list_refs(forge.git_path("alice", "demo"))
    return refs["refs/heads/main"]
