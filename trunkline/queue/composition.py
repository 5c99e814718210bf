"""Wiring of the durable merge queue for a running bot: service, effect runner, bot hooks.

Performs no I/O itself (it builds objects that do), except `installation_from_deliveries`,
which reads the store when asked. Called once at the composition root:
`runtime_from_settings(settings, engine, clock, http=..., environ=os.environ, redactor=...)`
builds the installation clients (their ports redact every text written to GitHub with the
composition root's `redactor`), the workspace (in the data directory) and the lock manager
from the settings; `build_queue_runtime` takes the pieces directly (tests).
`installation_for(repo)` names the App installation that serves a repository (from the newest
webhook of that repository; tests pass the seeded one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine, select

from trunkline.agents.redaction import Redactor
from trunkline.clock import Clock
from trunkline.errors import RetryableError
from trunkline.github.installations import InstallationClients
from trunkline.locks.leases import LockManager
from trunkline.queue.crashpoints import NO_CRASH_POINTS, CrashPoints, crash_points_from_env
from trunkline.queue.runner import LockReleaser, QueueEffectRunner, RepositoryAccess
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.engine import read_only
from trunkline.store.tables import Delivery
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace


@dataclass(frozen=True)
class QueueRuntime:
    queues: QueueService
    runner: QueueEffectRunner


def build_queue_runtime(
    engine: Engine,
    clock: Clock,
    *,
    clients: InstallationClients,
    installation_for: Callable[[str], int],
    git_web_url: str,
    workspace: Workspace,
    locks: LockReleaser,
    crash_points: CrashPoints = NO_CRASH_POINTS,
    own_app: str | None = None,
) -> QueueRuntime:
    """The queue service and its effect runner, sharing `crash_points`. `own_app` is
    trunkline's App slug: its check runs never count as required checks."""
    queues = QueueService(engine, clock, crash_points=crash_points)
    web = git_web_url.rstrip("/")

    def access(repo: str) -> RepositoryAccess:
        installation = installation_for(repo)
        tokens = clients.tokens(installation)
        return RepositoryAccess(
            github=clients.for_installation(installation),
            spec=RepositorySpec(repo, f"{web}/{repo}.git"),
            token=tokens.token,
        )

    runner = QueueEffectRunner(
        queues, access, workspace, locks, clock, crash_points=crash_points, own_app=own_app
    )
    return QueueRuntime(queues, runner)


class NoInstallationError(RetryableError):
    """No webhook from a repository has named the App installation that serves it yet (the
    effect is retried: the webhook that created the work is on its way)."""


def installation_from_deliveries(engine: Engine) -> Callable[[str], int]:
    """`repo -> installation id`, from the newest stored webhook of that repository.

    Every delivery GitHub sends for an installed App carries `installation.id`; the queue only
    acts on repositories it has received webhooks from, so the store always knows it.
    """

    def installation_for(repo: str) -> int:
        with engine.connect() as conn:
            found = (
                read_only(conn)
                .execute(
                    select(Delivery.installation_id)
                    .where(
                        Delivery.repo_full_name == repo,
                        Delivery.installation_id.is_not(None),
                    )
                    .order_by(Delivery.id.desc())
                    .limit(1)
                )
                .scalar_one_or_none()
            )
        if found is None:
            raise NoInstallationError(f"no webhook from {repo} named its App installation yet")
        return int(found)

    return installation_for


def runtime_from_settings(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    *,
    http: httpx.Client,
    environ: Mapping[str, str],
    redactor: Redactor,
) -> QueueRuntime:
    """The queue runtime of a bot process, from its settings (the composition root's call).

    `environ` is read only for `TRUNKLINE_TEST_CRASH_AT` (unset in production: no-op).
    """
    return build_queue_runtime(
        engine,
        clock,
        clients=InstallationClients.from_settings(
            settings, clock=clock, http=http, redactor=redactor
        ),
        installation_for=installation_from_deliveries(engine),
        git_web_url=settings.github_web_url,
        workspace=Workspace(
            settings.data_dir, Identity(settings.git_author_name, settings.git_author_email)
        ),
        locks=LockManager(engine),
        crash_points=crash_points_from_env(environ),
        own_app=own_app_slug(settings.github_bot_login),
    )


def own_app_slug(bot_login: str | None) -> str | None:
    """The App's slug from its bot login (`trunkline[bot]` -> `trunkline`)."""
    if not bot_login or not bot_login.endswith("[bot]"):
        return None
    return bot_login.removesuffix("[bot]")
