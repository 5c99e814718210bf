"""`configure_dispatch` wires the pipeline into a bot service; `RepositoryPolicies` reads
each repository's policy through the installation recorded with its items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from trunkline.bot.service import build_service
from trunkline.clock import FakeClock
from trunkline.errors import TerminalError
from trunkline.github.fake import FakeGitHub
from trunkline.github.port import GitHubPort
from trunkline.pipeline import events as ev
from trunkline.pipeline.agent_performers import RESUME_JOB
from trunkline.pipeline.composition import DispatchWiring, RepositoryPolicies, configure_dispatch
from trunkline.pipeline.runner import COMMAND_JOB, PipelineService
from trunkline.policies.model import Permission, Policy
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.testing import migrated_engine

REPO = "acme/widgets"


def test_pipeline_composition_registers_jobs_routes_and_the_admission_tick(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"responses": []}))
    settings = Settings(
        data_dir=tmp_path,
        agent_provider="scripted",
        agent_script=script,
        webhook_secret=SecretStr("webhook-secret-value"),
    )
    engine = migrated_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    github = FakeGitHub()
    wired: list[DispatchWiring] = []
    try:
        service = build_service(
            settings,
            engine=engine,
            configure=lambda s: wired.append(
                configure_dispatch(
                    s,
                    queue=QueueService(engine, FakeClock()),
                    github_for=lambda installation: github,
                    token_for=lambda installation: None,
                    repository_url=lambda repo: f"http://127.0.0.1:1/{repo}.git",
                )
            ),
        )
        assert {COMMAND_JOB, RESUME_JOB} <= set(service.handlers.handlers)
        for event, action in [
            ("issues", "labeled"),
            ("issues", "unlabeled"),
            ("pull_request_review", "submitted"),
            ("pull_request", "synchronize"),
            ("pull_request", "closed"),
        ]:
            assert service.router.handlers_for(event, action), (event, action)
        assert "pipeline_admission" in service.periodic.tasks
        assert len(wired) == 1
        # one redactor, built from the settings at the root, for the timeline and job errors
        assert service.redactor.redact("webhook-secret-value") == "[REDACTED]"
        assert wired[0].pipeline.redactor is service.redactor
        assert service.jobs.redactor is service.redactor
    finally:
        engine.dispose()


def test_pipeline_composition_reads_and_caches_each_repositorys_policy(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    github = FakeGitHub()
    github.add_repo(REPO)
    github.set_file(REPO, "main", ".github/trunkline.yml", "version: 1\ndispatch:\n  label: go\n")
    seen: list[int | None] = []

    def github_for(installation: int | None) -> GitHubPort:
        seen.append(installation)
        return github

    clock = FakeClock()
    policies = RepositoryPolicies(engine, github_for, clock, ttl_seconds=60)
    try:
        service = PipelineService(engine, clock, policies.config)
        # the installation a delivery came from is used before any item records it
        policies.note_installation(REPO, 41)
        service.submit(
            REPO,
            3,
            ev.Labeled(REPO, 3, "maya", Permission.WRITE, "go"),
            installation_id=41,
        )
        assert isinstance(policies(REPO), Policy)
        assert policies.config(REPO).dispatch_label == "go"
        reads = len(github.calls_of("get_file"))
        policies(REPO)
        assert len(github.calls_of("get_file")) == reads  # cached
        clock.advance(61)
        github.set_file(REPO, "main", ".github/trunkline.yml", "version: 1\nbogus: true\n")
        with pytest.raises(TerminalError, match="does not load"):
            policies(REPO)
        assert 41 in seen
    finally:
        engine.dispose()
