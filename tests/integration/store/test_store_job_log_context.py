"""The log context a job binds while it runs: what its payload is about, scalars only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from trunkline.store.jobs import JobStore, NewJob
from trunkline.store.runner import HandlerRegistry, RunnerConfig, WorkerPool, job_log_context
from trunkline.store.testing import migrated_engine
from trunkline.telemetry import current_context


def test_job_log_context_names_repo_issue_pr_and_delivery() -> None:
    payload = {"repo": "acme/api", "issue": 7, "pr": 12, "delivery_id": "d-1", "poll": 0}
    assert job_log_context(payload) == {
        "repo": "acme/api",
        "issue": 7,
        "pr": 12,
        "delivery": "d-1",
    }


def test_job_log_context_skips_documents_and_flags() -> None:
    payload = {"issue": {"number": 7}, "pr": True, "repo": None, "command": {"type": "x"}}
    assert job_log_context(payload) == {}


def test_a_running_job_binds_its_context(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    seen: list[Mapping[str, object]] = []
    registry = HandlerRegistry()
    registry.register("k", lambda job: seen.append(current_context()))
    store = JobStore(engine, lease_seconds=30)
    try:
        store.enqueue(NewJob(kind="k", key="a", payload={"delivery_id": "d-9", "repo": "a/b"}))
        pool = WorkerPool(store, registry, RunnerConfig(threads=1))
        assert pool.run_once("w")
    finally:
        engine.dispose()
    assert len(seen) == 1
    assert seen[0]["delivery"] == "d-9"
    assert seen[0]["repo"] == "a/b"
    assert isinstance(seen[0]["job"], int)
    assert current_context() == {}  # unbound after the job
