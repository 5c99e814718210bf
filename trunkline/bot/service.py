"""The composition root of the running bot: web server, job workers and scheduler.

Performs I/O (database, threads, sockets, signals). `build_service` wires the store, the
router and the job handlers once; `serve` runs web + workers + scheduler in one process and
`work` runs workers only. Both refuse to start on a database whose schema is not current and
shut down cleanly on SIGTERM/SIGINT: stop taking work, finish running jobs, release the
scheduler lease. Other areas add their event handlers, job kinds and periodic tasks through
the `configure` hook (called with the `Service` before anything starts).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

from fastapi import FastAPI
from sqlalchemy import Engine

from trunkline.agents.redaction import Redactor, redactor_for
from trunkline.bot.processing import process_delivery_handler
from trunkline.bot.router import Router
from trunkline.clock import SystemClock
from trunkline.settings import Settings
from trunkline.store.deliveries import PROCESS_DELIVERY
from trunkline.store.engine import engine_from_settings
from trunkline.store.jobs import JobStore
from trunkline.store.runner import HandlerRegistry, RunnerConfig, WorkerPool
from trunkline.store.scheduler import LeaderScheduler, PeriodicRegistry, default_registry

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    engine: Engine
    jobs: JobStore
    router: Router
    handlers: HandlerRegistry
    periodic: PeriodicRegistry
    redactor: Redactor
    """The one redactor of the process (settings and environment secrets, token shapes):
    every text written to GitHub, the store or the model passes it."""


Configure = Callable[[Service], None]


def build_service(
    settings: Settings,
    *,
    engine: Engine | None = None,
    configure: Configure | None = None,
    now: Callable[[], datetime] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Service:
    """`environ` (default: the process's) is read for secret-named variables to redact."""
    redactor = redactor_for(settings, os.environ if environ is None else environ)
    db = engine if engine is not None else engine_from_settings(settings)
    jobs = JobStore(db, lease_seconds=settings.job_lease_seconds, redactor=redactor)
    router = Router()
    handlers = HandlerRegistry()
    handlers.register(
        PROCESS_DELIVERY, process_delivery_handler(db, router, now or SystemClock().now)
    )
    periodic = default_registry(jobs, sweep_seconds=max(settings.job_lease_seconds / 2, 1.0))
    service = Service(settings, db, jobs, router, handlers, periodic, redactor)
    if configure is not None:
        configure(service)
    return service


def worker_pool(service: Service, threads: int) -> WorkerPool:
    lease = service.settings.job_lease_seconds
    config = RunnerConfig(
        threads=threads,
        poll_seconds=service.settings.worker_poll_seconds,
        heartbeat_seconds=max(lease / 3, 0.05),
    )
    return WorkerPool(service.jobs, service.handlers, config)


def serve(service: Service, *, host: str, port: int, threads: int) -> int:
    """Web + workers + scheduler in this process until SIGTERM/SIGINT."""
    import uvicorn

    from trunkline.bot.app import create_app

    pool = worker_pool(service, threads)
    scheduler = LeaderScheduler(
        service.engine, service.periodic, lease_seconds=service.settings.job_lease_seconds
    )
    from trunkline.web.auth import is_loopback

    app = create_app(
        service.settings,
        engine=service.engine,
        on_jobs_enqueued=lambda _: pool.wake(),
        expose_deliveries=is_loopback(host) or service.settings.dashboard_token is not None,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=service.settings.log_level.lower(),
        access_log=False,
        log_config=None,  # keep trunkline's structured logging
        timeout_graceful_shutdown=20,
    )
    server = uvicorn.Server(config)
    _mount_dashboard(app, service, host, should_stop=lambda: server.should_exit)
    pool.start()
    scheduler.start()
    try:
        # uvicorn handles SIGTERM/SIGINT (stop accepting, drain requests) and re-raises the
        # signal afterwards; a SIGTERM handler that returns lets the clean-up below run.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _note_signal)
        server.run()
    finally:
        scheduler.stop()
        pool.stop()
        service.engine.dispose()
    return 0


def _mount_dashboard(
    app: FastAPI, service: Service, host: str, *, should_stop: Callable[[], bool]
) -> None:
    """Serve the read-only dashboard at /dashboard and metrics at /metrics.

    `serve` usually listens publicly for webhooks, so the dashboard is mounted only when it is
    protected by TRUNKLINE_DASHBOARD_TOKEN or the server listens on loopback only.
    """
    from trunkline.web.auth import is_loopback
    from trunkline.web.dashboard import create_dashboard
    from trunkline.web.metrics import create_metrics_router

    settings = service.settings
    if settings.dashboard_token is None and not is_loopback(host):
        log.warning(
            "dashboard and /metrics not mounted: set TRUNKLINE_DASHBOARD_TOKEN to serve them "
            "on a non-loopback address",
            extra={"host": host},
        )
        return
    clock = SystemClock()
    app.include_router(
        create_dashboard(service.engine, settings, clock, should_stop=should_stop),
        prefix="/dashboard",
    )
    app.include_router(create_metrics_router(service.engine, settings, clock))


def _note_signal(signum: int, _: FrameType | None) -> None:
    log.info("shutting down", extra={"signal": signum})


def work(service: Service, *, threads: int, stop: threading.Event | None = None) -> int:
    """Workers only (no web, no scheduler) until SIGTERM/SIGINT or `stop` is set."""
    stop_event = stop or threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("stopping workers", extra={"signal": signum})
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    pool = worker_pool(service, threads)
    pool.start()
    try:
        stop_event.wait()
    finally:
        pool.stop()
        service.engine.dispose()
    return 0
