"""Periodic work: a registry other areas add tasks to, run by APScheduler on the leader only.

Performs I/O (threads, database through the leader lease). Every replica runs a
`BackgroundScheduler`; an election task renews the `scheduler` lease row every third of its TTL,
and each registered task runs only while this replica holds the lease. With several replicas
exactly one runs the periodic tasks; when it dies another takes over after the TTL.

Registered by default: the lease sweep (requeue jobs of dead workers). Other areas register
reconcilers (`register_reconciler`: re-read open work from GitHub so a missed delivery only
delays work) and queue ticks (`register_queue_tick`); with none registered those tasks are
no-ops. Tasks should be short: heavy work belongs in a job they enqueue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from trunkline.store.jobs import JobStore
from trunkline.store.leader import LeaderLease
from trunkline.store.runner import new_worker_id

log = logging.getLogger(__name__)

Task = Callable[[], None]
LEADER_LEASE_NAME = "scheduler"


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    interval_seconds: float
    function: Task


@dataclass
class PeriodicRegistry:
    """What runs periodically; filled at the composition root before the scheduler starts."""

    tasks: dict[str, PeriodicTask] = field(default_factory=dict)
    reconcilers: list[Task] = field(default_factory=list)
    queue_ticks: list[Task] = field(default_factory=list)

    def register(self, name: str, interval_seconds: float, function: Task) -> None:
        if name in self.tasks:
            raise ValueError(f"periodic task {name!r} is already registered")
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self.tasks[name] = PeriodicTask(name, interval_seconds, function)

    def register_reconciler(self, function: Task) -> None:
        self.reconcilers.append(function)

    def register_queue_tick(self, function: Task) -> None:
        self.queue_ticks.append(function)

    def run_reconcilers(self) -> None:
        _run_all("reconciler", self.reconcilers)

    def run_queue_ticks(self) -> None:
        _run_all("queue tick", self.queue_ticks)


def _run_all(what: str, functions: list[Task]) -> None:
    for function in list(functions):
        try:
            function()
        except Exception:
            log.exception(f"{what} failed", extra={"task": getattr(function, "__name__", "?")})


def default_registry(
    jobs: JobStore,
    *,
    sweep_seconds: float,
    reconcile_seconds: float = 300.0,
    queue_tick_seconds: float = 15.0,
) -> PeriodicRegistry:
    """A registry with the lease sweep and the (initially empty) reconciler and queue ticks."""
    registry = PeriodicRegistry()
    registry.register("lease_sweep", sweep_seconds, lambda: _sweep(jobs))
    registry.register("reconciler", reconcile_seconds, registry.run_reconcilers)
    registry.register("queue_tick", queue_tick_seconds, registry.run_queue_ticks)
    return registry


def _sweep(jobs: JobStore) -> None:
    result = jobs.sweep()
    if result.requeued or result.dead:
        log.info("lease sweep", extra={"requeued": result.requeued, "dead": result.dead})


class LeaderScheduler:
    """Runs a registry's tasks on APScheduler while this replica holds the leader lease."""

    def __init__(
        self,
        engine: Engine,
        registry: PeriodicRegistry,
        *,
        lease_seconds: float = 30.0,
        holder: str | None = None,
    ) -> None:
        self.registry = registry
        self.lease = LeaderLease(
            engine,
            name=LEADER_LEASE_NAME,
            holder=holder or new_worker_id("scheduler"),
            ttl_seconds=lease_seconds,
        )
        self.lease_seconds = lease_seconds
        self._leader_until = 0.0
        self._epoch = 0
        self._lock = threading.Lock()
        self._scheduler: object | None = None

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return time.monotonic() < self._leader_until

    @property
    def epoch(self) -> int:
        return self._epoch

    def elect(self) -> bool:
        """One election round (renew or take the lease); True if this replica leads."""
        started = time.monotonic()
        try:
            leadership = self.lease.acquire_or_renew()
        except Exception:
            log.exception("leader election failed")
            leadership = None
        with self._lock:
            if leadership is not None and leadership.leader:
                if leadership.epoch != self._epoch:
                    log.info("scheduler leadership taken", extra={"epoch": leadership.epoch})
                self._epoch = leadership.epoch
                # Trust the lease a little less than its TTL, measured from before the call.
                self._leader_until = started + self.lease_seconds * 0.8
                return True
            self._leader_until = 0.0
            return False

    def _guarded(self, task: PeriodicTask) -> Task:
        def run() -> None:
            if not self.is_leader:
                return
            try:
                task.function()
            except Exception:
                log.exception("periodic task failed", extra={"task": task.name})

        return run

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(
            self.elect,
            "interval",
            seconds=max(self.lease_seconds / 3, 0.1),
            id="leader_election",
            max_instances=1,
            coalesce=True,
        )
        for task in self.registry.tasks.values():
            scheduler.add_job(
                self._guarded(task),
                "interval",
                seconds=task.interval_seconds,
                id=task.name,
                max_instances=1,
                coalesce=True,
            )
        self.elect()
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        scheduler = self._scheduler
        self._scheduler = None
        if scheduler is not None:
            scheduler.shutdown(wait=True)  # type: ignore[attr-defined]
        with self._lock:
            was_leader = time.monotonic() < self._leader_until
            self._leader_until = 0.0
        if was_leader:
            try:
                self.lease.release()
            except Exception:
                log.exception("could not release the scheduler lease")
