"""Wiring of the dispatch pipeline into a bot service (`build_service(configure=...)`).

Performs I/O only when called: it builds the runner, its performers and the webhook
handlers from `Settings` and the service's engine, and registers them (job kinds
`pipeline_command`, `agents_resume` and `pipeline_queue_departure` — the merge queue's
merges and ejections, which it enqueues once the queue is a `QueueService` — the dispatch
webhook routes, the admission tick, the
lease keep-alive tick, which renews the leases of every item holding them every
`lock_ttl / 3`, and the label reconciler (`pipeline_label_reconciler`, every 60 s: labels
and label removals whose webhook was lost, see `trunkline.pipeline.reconciler`), and the
dead-command sweep (`pipeline_dead_commands`, every 60 s: items whose awaited command's job
died, see `trunkline.pipeline.dead_commands`)).

Policies: each repository's `.github/trunkline.yml` is read through the GitHub port of the
installation that delivered its events (noted by the webhook handlers, else
`data["installation_id"]` of its items) at
`policy_ref` (default `main`), cached for `policy_ttl_seconds`. An invalid policy is a
`TerminalError` naming the first problem: nothing is dispatched under a policy that does
not load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from trunkline.agents.composition import (
    author_of,
    build_provider,
    build_sandbox,
    price_table,
)
from trunkline.agents.messages import Provider
from trunkline.agents.sandbox import Sandbox
from trunkline.agents.store_timeline import StoreTimeline
from trunkline.agents.timeline import TimelineSink
from trunkline.bot.dispatch_handlers import QUEUE_DEPARTURE_JOB, DispatchHandlers
from trunkline.bot.gate_runner import QueuePort
from trunkline.bot.item_commands import ItemCommands
from trunkline.bot.queue_commands import build_gate_runner
from trunkline.bot.service import Service
from trunkline.clock import Clock, SystemClock
from trunkline.errors import TerminalError
from trunkline.github.policy_file import read_policy
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.pipeline.agent_performers import RESUME_JOB, AgentPerformers
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.dead_commands import DEAD_COMMANDS_TICK_SECONDS, DeadCommandSweep
from trunkline.pipeline.escalation_performer import EscalationPerformer
from trunkline.pipeline.item_leases import renew_held_leases
from trunkline.pipeline.performers import GitHubPerformers
from trunkline.pipeline.reconciler import RECONCILE_TICK_SECONDS, LabelReconciler
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.store import INSTALLATION_KEY
from trunkline.policies.model import Policy
from trunkline.queue.service import QueueService
from trunkline.store.tables import WorkItem as WorkItemRow
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

ADMISSION_TICK_SECONDS = 30.0
LOCK_TTL = timedelta(minutes=10)


def installation_of(engine: Engine, repo: str) -> int | None:
    """The installation id recorded with any work item of `repo` (None: none recorded)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(WorkItemRow.data).where(WorkItemRow.repo_full_name == repo)
        ).scalars()
        for data in rows:
            value = (data or {}).get(INSTALLATION_KEY)
            if value is not None:
                return int(value)
    return None


@dataclass
class RepositoryPolicies:
    """Each repository's policy, read through GitHub and cached for `ttl_seconds`."""

    engine: Engine
    github_for: Callable[[int | None], GitHubPort]
    clock: Clock
    ref: str = "main"
    ttl_seconds: float = 60.0
    _cache: dict[str, tuple[float, Policy]] = field(default_factory=dict)
    _installations: dict[str, int] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def note_installation(self, repo: str, installation_id: int | None) -> None:
        """The installation a delivery for `repo` came from (read before any item exists)."""
        if installation_id is not None:
            with self._guard:
                self._installations[repo] = installation_id

    def noted_repositories(self) -> tuple[str, ...]:
        """The repositories whose installation a delivery told (this process's life)."""
        with self._guard:
            return tuple(self._installations)

    def installation(self, repo: str) -> int | None:
        with self._guard:
            noted = self._installations.get(repo)
        return noted if noted is not None else installation_of(self.engine, repo)

    def remember(self, repo: str, policy: Policy) -> None:
        with self._guard:
            self._cache[repo] = (self.clock.monotonic(), policy)

    def __call__(self, repo: str) -> Policy:
        with self._guard:
            cached = self._cache.get(repo)
        if cached is not None and self.clock.monotonic() - cached[0] < self.ttl_seconds:
            return cached[1]
        loaded = read_policy(self.github_for(self.installation(repo)), repo, self.ref)
        if not isinstance(loaded, Policy):
            raise TerminalError(f"the policy of {repo} does not load: {loaded[0]}")
        self.remember(repo, loaded)
        return loaded

    def config(self, repo: str) -> PipelineConfig:
        return PipelineConfig.of(self(repo))


@dataclass(frozen=True)
class DispatchWiring:
    pipeline: PipelineService
    handlers: DispatchHandlers
    policies: RepositoryPolicies
    reconciler: LabelReconciler


def configure_dispatch(
    service: Service,
    *,
    queue: QueuePort,
    github_for: Callable[[int | None], GitHubPort],
    token_for: Callable[[int | None], str | None],
    repository_url: Callable[[str], str],
    clock: Clock | None = None,
    policies: RepositoryPolicies | None = None,
    lock_ttl: timedelta = LOCK_TTL,
    provider: Provider | None = None,
) -> DispatchWiring:
    """Register the dispatch pipeline on `service` (for `build_service(configure=...)`).

    `github_for` / `token_for`: installation id -> its GitHub port / a fresh installation
    token (`InstallationClients.for_installation` / `.tokens(id).token()`);
    `repository_url`: `OWNER/REPO` -> its clone URL without credentials;
    `lock_ttl`: the lease an item takes on its subsystems, renewed every third of it;
    `provider`: the model provider (default: the one the settings name, `build_provider`).
    """
    settings = service.settings
    engine = service.engine
    clock = clock or SystemClock()
    policies = policies or RepositoryPolicies(engine, github_for, clock)
    pipeline = PipelineService(engine, clock, policies.config, redactor=service.redactor)
    locks = LockManager(engine)
    GitHubPerformers(
        github_for,
        policies,
        locks,
        queue,
        lock_ttl=lock_ttl,
        refresh_gates=build_gate_runner(engine, queue, settings).refresh,
    ).register(pipeline)
    data_dir = Path(settings.data_dir)
    workspace = Workspace(data_dir, Identity(settings.git_author_name, settings.git_author_email))

    def spec_for(repo: str) -> RepositorySpec:
        return RepositorySpec(repo, repository_url(repo))

    EscalationPerformer(github_for, policies, workspace, spec_for, token_for).register(pipeline)

    def sandbox_for(worktree: Path) -> Sandbox:
        return build_sandbox(settings, worktree)

    def timeline_for() -> TimelineSink:
        return StoreTimeline(engine)

    agents = AgentPerformers(
        engine=engine,
        service=pipeline,
        github_for=github_for,
        policy_for=policies,
        workspace=workspace,
        spec_for=spec_for,
        token_for=token_for,
        provider=provider or build_provider(settings),
        sandbox_for=sandbox_for,
        timeline_for=timeline_for,
        clock=clock,
        redactor=service.redactor,
        prices=price_table(settings),
        author=author_of(settings),
        locks=locks,
        lock_ttl=lock_ttl,
        model=settings.agent_model,
        # a role run's claim lives as long as a job's lease: a run whose process died is
        # taken over about when its job is delivered again
        run_claim_ttl=timedelta(seconds=settings.job_lease_seconds),
    )
    agents.register(pipeline)
    pipeline.register_handlers(service.handlers)
    service.handlers.register(RESUME_JOB, agents.resume_job)
    handlers = DispatchHandlers(pipeline, github_for, policies.note_installation)
    handlers.register(service.router)
    ItemCommands(
        pipeline,
        github_for,
        policies,
        team_members={team: frozenset(members) for team, members in settings.team_members.items()},
    ).register(service.router)
    service.handlers.register(QUEUE_DEPARTURE_JOB, handlers.queue_departure_job)
    if isinstance(queue, QueueService):
        queue.departure_job_kind = QUEUE_DEPARTURE_JOB
    service.periodic.register("pipeline_admission", ADMISSION_TICK_SECONDS, handlers.admission_tick)
    reconciler = LabelReconciler(
        pipeline,
        github_for,
        clock,
        installation_for=policies.installation,
        note_installation=policies.note_installation,
        noted_repositories=policies.noted_repositories,
    )

    def reconcile_labels() -> None:
        reconciler.tick()

    service.periodic.register("pipeline_label_reconciler", RECONCILE_TICK_SECONDS, reconcile_labels)
    dead_commands = DeadCommandSweep(pipeline, clock)

    def settle_dead_commands() -> None:
        dead_commands.tick()

    service.periodic.register(
        "pipeline_dead_commands", DEAD_COMMANDS_TICK_SECONDS, settle_dead_commands
    )

    def keep_leases_alive() -> None:
        renew_held_leases(pipeline.items(), locks, lock_ttl)

    service.periodic.register(
        "pipeline_lease_keepalive", lock_ttl.total_seconds() / 3, keep_leases_alive
    )
    return DispatchWiring(pipeline, handlers, policies, reconciler)
