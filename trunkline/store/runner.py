"""The job runner: worker threads that claim jobs, run their handlers, and record the outcome.

Performs I/O (database, clock, threads). Handlers are plain synchronous callables registered by
job kind; they receive the claimed job and must be idempotent (delivery is at-least-once: a
job whose worker died is run again after its lease expires). Outcomes:
- handler returns -> done;
- `RetryableError` or an unexpected exception -> queued again after exponential backoff with
  jitter, dead after `max_attempts`;
- `TerminalError` (or no handler for the kind) -> dead at once.
A heartbeat thread renews the lease of every job the pool is running, so a slow handler keeps
its job while a dead process's jobs become claimable when their lease runs out; every few
beats it also sweeps expired leases (dead-lettering jobs that used their last attempt).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from trunkline.errors import TerminalError
from trunkline.store.backoff import BackoffPolicy, decide_failure
from trunkline.store.jobs import ClaimedJob, JobStore
from trunkline.telemetry.json_logs import bind_context

log = logging.getLogger(__name__)

JobHandler = Callable[[ClaimedJob], None]


class UnknownJobKindError(TerminalError):
    """No handler is registered for a job's kind."""


@dataclass
class HandlerRegistry:
    """Job kind -> handler."""

    handlers: dict[str, JobHandler] = field(default_factory=dict)

    def register(self, kind: str, handler: JobHandler) -> None:
        if kind in self.handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self.handlers[kind] = handler

    def handler(self, kind: str) -> Callable[[JobHandler], JobHandler]:
        """Decorator form of `register`."""

        def decorate(function: JobHandler) -> JobHandler:
            self.register(kind, function)
            return function

        return decorate

    def run(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            raise UnknownJobKindError(f"no handler registered for job kind {job.kind!r}")
        handler(job)


def job_log_context(payload: dict[str, object]) -> dict[str, object]:
    """The log context a job's payload names: repo, issue, pr, delivery (scalars only)."""
    names = {"repo": "repo", "issue": "issue", "pr": "pr", "delivery_id": "delivery"}
    return {
        name: payload[key]
        for key, name in names.items()
        if isinstance(payload.get(key), str | int) and not isinstance(payload.get(key), bool)
    }


def new_worker_id(prefix: str = "worker") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class RunnerConfig:
    threads: int = 2
    poll_seconds: float = 0.5
    heartbeat_seconds: float = 10.0
    sweep_every_beats: int = 3
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)


class WorkerPool:
    """`threads` workers sharing one job store, plus one heartbeat thread."""

    def __init__(
        self,
        store: JobStore,
        registry: HandlerRegistry,
        config: RunnerConfig,
        *,
        name: str = "worker",
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.config = config
        self.name = name
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._running: dict[int, ClaimedJob] = {}
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pool_id = new_worker_id(name)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self.config.threads):
            worker_id = f"{self._pool_id}:{index}"
            thread = threading.Thread(
                target=self._work, args=(worker_id,), name=f"{self.name}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name=f"{self.name}-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        log.info(
            "job workers started", extra={"pool": self._pool_id, "threads": len(self._threads)}
        )

    def wake(self) -> None:
        """Tell idle workers that a job may be waiting (saves a poll interval)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let running handlers finish (up to `timeout`), then return."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- one job ---------------------------------------------------------------------------
    def run_once(self, worker_id: str) -> bool:
        """Claim and run at most one job; True if one was run."""
        jobs = self.store.claim(worker_id, limit=1)
        if not jobs:
            return False
        job = jobs[0]
        with self._running_lock:
            self._running[job.id] = job
        try:
            self._execute(job)
        finally:
            with self._running_lock:
                self._running.pop(job.id, None)
        return True

    def _execute(self, job: ClaimedJob) -> None:
        # every record logged while the job runs carries the job and what it is about
        with bind_context(job=job.id, **job_log_context(job.payload)):
            self._execute_bound(job)

    def _execute_bound(self, job: ClaimedJob) -> None:
        context = {
            "job_id": job.id,
            "job_kind": job.kind,
            "job_key": job.key,
            "attempt": job.attempts,
        }
        try:
            self.registry.run(job)
        except Exception as error:
            decision = decide_failure(
                self.config.backoff, error, job.attempts, job.max_attempts, self.rng.random()
            )
            recorded = self.store.fail(
                job, decision.reason, dead=decision.dead, delay_seconds=decision.delay
            )
            log.log(
                logging.ERROR if decision.dead else logging.WARNING,
                "job failed",
                exc_info=not isinstance(error, TerminalError),
                extra={
                    **context,
                    "dead": decision.dead,
                    "retry_in": decision.delay,
                    "recorded": recorded,
                    "error": decision.reason,
                },
            )
            return
        if not self.store.finish(job):
            log.warning("job finished after its lease was lost", extra=context)

    # -- threads ---------------------------------------------------------------------------
    def _work(self, worker_id: str) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once(worker_id)
            except Exception:
                log.exception("job worker error", extra={"worker": worker_id})
                ran = False
                self._stop.wait(self.config.poll_seconds)
            if not ran and not self._stop.is_set():
                self._wake.wait(self.config.poll_seconds)
                self._wake.clear()

    def _heartbeat(self) -> None:
        beats = 0
        while not self._stop.wait(self.config.heartbeat_seconds):
            beats += 1
            if beats % self.config.sweep_every_beats == 0:
                self._sweep()
            with self._running_lock:
                running = list(self._running.values())
            for job in running:
                try:
                    if not self.store.heartbeat(job):
                        log.warning(
                            "job lease lost",
                            extra={"job_id": job.id, "job_kind": job.kind, "job_key": job.key},
                        )
                except Exception:
                    log.exception("heartbeat failed", extra={"job_id": job.id})

    def _sweep(self) -> None:
        """Requeue (or dead-letter) jobs of dead workers, so workers alone need no scheduler."""
        try:
            result = self.store.sweep()
        except Exception:
            log.exception("lease sweep failed")
            return
        if result.requeued or result.dead:
            log.info("lease sweep", extra={"requeued": result.requeued, "dead": result.dead})
