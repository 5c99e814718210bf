"""The production composition of the bot: every area's handlers on one `Service`.

Performs no I/O itself beyond reading the App's private key (through
`InstallationClients.from_settings`); it builds the objects that do. `trunkline serve` and
`trunkline worker` pass `configure_bot` to `build_service`. Without GitHub App settings
(`TRUNKLINE_GITHUB_APP_ID`, `TRUNKLINE_GITHUB_PRIVATE_KEY_PATH`) the bot only takes and stores
webhooks, and says so once in the log.

What is wired, sharing one set of installation clients, one workspace and one lock manager:
- the merge queue: webhook -> engine events, the `queue_effect` job, the periodic tick;
- the gates: check runs, approvals, `/trunkline queue|dequeue|approve|retry|priority|explain`,
  the native merge queue's `merge_group` gate;
- takeover and resume (`/trunkline takeover|resume`);
- the dispatch pipeline (labeled issues -> planned, executed, reviewed, queued work), when an
  agent provider is configured (the anthropic provider with its API key, or the scripted one
  with its script); without one the rest still runs and the log says dispatch is off.
"""

from __future__ import annotations

import logging
import os

import httpx

from trunkline.bot.queue_commands import build_gate_runner, configure_queue_gates
from trunkline.bot.queue_events import queue_configure
from trunkline.bot.service import Service
from trunkline.bot.takeover_handlers import JobLauncher, TakeoverDeps, register_takeover_handlers
from trunkline.clock import SystemClock
from trunkline.errors import TerminalError
from trunkline.github.installations import InstallationClients
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.pipeline.composition import configure_dispatch
from trunkline.queue.composition import (
    build_queue_runtime,
    installation_from_deliveries,
    own_app_slug,
)
from trunkline.queue.crashpoints import crash_points_from_env
from trunkline.settings import Settings
from trunkline.workspace.model import Identity
from trunkline.workspace.workspace import Workspace

log = logging.getLogger(__name__)


class MissingInstallationError(TerminalError):
    """A webhook that needs the GitHub API carried no App installation id."""


def github_app_configured(service: Service) -> bool:
    settings = service.settings
    return bool(settings.github_app_id) and settings.github_private_key_path is not None


def configure_bot(service: Service) -> None:
    """A `build_service` configure hook: wire every area when the GitHub App is configured."""
    if not github_app_configured(service):
        log.warning(
            "GitHub App not configured (TRUNKLINE_GITHUB_APP_ID, "
            "TRUNKLINE_GITHUB_PRIVATE_KEY_PATH): webhooks are stored, nothing acts on them"
        )
        return
    settings = service.settings
    clock = SystemClock()
    clients = InstallationClients.from_settings(
        settings,
        clock=clock,
        http=httpx.Client(timeout=30),  # lives as long as the process
        redactor=service.redactor,
    )
    locks = LockManager(service.engine)
    workspace = Workspace(
        settings.data_dir, Identity(settings.git_author_name, settings.git_author_email)
    )
    # A crash may have left git lock files and half-made worktrees: clean them before work
    # (under each mirror's lock; the worktrees of work items stay).
    for report in workspace.recover_all():
        if not report.clean:
            log.warning("cleaned what a crash left in a mirror", extra={"recovery": str(report)})
    runtime = build_queue_runtime(
        service.engine,
        clock,
        clients=clients,
        installation_for=installation_from_deliveries(service.engine),
        git_web_url=settings.github_web_url,
        workspace=workspace,
        locks=locks,
        crash_points=crash_points_from_env(os.environ),
        own_app=own_app_slug(settings.github_bot_login),
    )

    def github_for(installation: int | None) -> GitHubPort:
        if installation is None:
            raise MissingInstallationError("the webhook carried no App installation id")
        return clients.for_installation(installation)

    def token_for(installation: int | None) -> str | None:
        if installation is None:
            return None
        return clients.tokens(installation).token()

    gates = build_gate_runner(service.engine, runtime.queues, settings)
    queue_configure(
        runtime.queues,
        runtime.runner,
        lambda access, repo, pr: gates.refresh(access.github, repo, pr),
    )(service)
    configure_queue_gates(service, runtime.queues, github_for)
    register_takeover_handlers(
        service.router,
        TakeoverDeps(
            engine=service.engine,
            github_for=github_for,
            launcher=JobLauncher(service.jobs),
            locks=locks,
        ),
    )

    if agents_configured(settings):
        configure_dispatch(
            service,
            queue=runtime.queues,
            github_for=github_for,
            token_for=token_for,
            repository_url=lambda repo: f"{settings.github_web_url.rstrip('/')}/{repo}.git",
            clock=clock,
        )
    else:
        log.warning(
            "agents not configured: labeled issues are not dispatched (set "
            "TRUNKLINE_ANTHROPIC_API_KEY, or TRUNKLINE_AGENT_PROVIDER=scripted with "
            "TRUNKLINE_AGENT_SCRIPT)"
        )


def agents_configured(settings: Settings) -> bool:
    if settings.agent_provider == "scripted":
        return settings.agent_script is not None
    return settings.anthropic_api_key is not None
