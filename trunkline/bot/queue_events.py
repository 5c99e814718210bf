"""Webhooks -> merge queue events, the queue's job handler and its periodic tick.

Performs I/O through `QueueService` (the store) only; GitHub is touched by the effect runner.
Handlers run inside `process_delivery` (at-least-once): every event they submit is a prompt
the engine handles idempotently (a duplicate or late report changes nothing). Mapping:
- `check_run` created / in_progress / completed on the integration SHA of an active build of
  a queue in that repository, for a required check name that counts (not trunkline's own
  App; the pinned App when the policy pins one) -> `CheckStarted` / `CheckCompleted`
  (`created` while still queued is not a start);
- `status` on such a SHA whose context is a required check -> `CheckStarted` (pending) /
  `CheckCompleted` (success; failure and error fail);
- `push` to `refs/heads/<base>` of an existing queue -> `BaseMoved(after)` (branch deletion
  ignored); pushes to the queue's own integration branches are ignored;
- `pull_request` synchronize -> `PrHeadChanged(pr, head.sha)` in every queue holding the PR;
- `pull_request` closed without merge -> `Dequeue(pr, by=sender, reason="PR closed")`;
  closed as merged while the PR is not being fast-forwarded by the queue -> `Dequeue` with
  "merged outside the queue";
- `pull_request` edited to another base -> `Dequeue` from the queues of other bases;
- the scheduler's queue tick -> `Tick()` for every queue with entries or builds (timeouts);
- the scheduler's reconciler re-reads GitHub for what lost webhooks would have said
  (`trunkline.queue.reconciler`).
Install with `build_service(settings, configure=configure_queue)` (everything from the
settings) or `configure=queue_configure(queues, runner)` (pieces built by the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from trunkline.bot.events import CheckRunEvent, PullRequestEvent, PushEvent, StatusEvent
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.service import Service
from trunkline.queue import events as ev
from trunkline.queue.model import BuildState
from trunkline.queue.reconciler import GateRefresher, queue_reconciler
from trunkline.queue.required_checks import counts, status_counts, status_report
from trunkline.queue.runner import QueueEffectRunner, queue_conclusion
from trunkline.queue.service import EFFECT_JOB, QueueService

log = logging.getLogger(__name__)

BRANCH_PREFIX = "refs/heads/"


def register_queue_events(
    router: Router, queues: QueueService, *, own_app: str | None = None
) -> None:
    """Route the webhooks the queue listens to onto `queues` (`own_app`: trunkline's App
    slug, whose check runs never count as required checks)."""

    def on_check_run(routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, CheckRunEvent):
            return
        run = payload.check_run
        repo = payload.repository.full_name
        app = run.app.slug if run.app is not None else None
        for state in queues.states(repo):
            if not counts(state.config, run.name, app, own_app):
                continue
            if not any(build.integration_sha == run.head_sha for build in state.builds):
                continue
            if run.status == "completed":
                reported: ev.Event = ev.CheckCompleted(
                    run.head_sha, run.name, queue_conclusion(run.conclusion)
                )
            elif run.status == "in_progress":
                reported = ev.CheckStarted(run.head_sha, run.name)
            else:
                continue
            queues.submit(repo, state.base, reported)

    def on_status(routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, StatusEvent):
            return
        repo = payload.repository.full_name
        for state in queues.states(repo):
            if not status_counts(state.config, payload.context):
                continue
            if not any(build.integration_sha == payload.sha for build in state.builds):
                continue
            report = status_report(payload.context, payload.state, payload.description)
            reported: ev.Event = (
                ev.CheckStarted(payload.sha, payload.context)
                if report.conclusion is None
                else ev.CheckCompleted(
                    payload.sha, payload.context, report.conclusion, report.summary
                )
            )
            queues.submit(repo, state.base, reported)

    def on_push(routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, PushEvent) or payload.deleted:
            return
        if not payload.ref.startswith(BRANCH_PREFIX):
            return
        branch = payload.ref[len(BRANCH_PREFIX) :]
        repo = payload.repository.full_name
        if queues.state(repo, branch) is None:
            return
        queues.submit(repo, branch, ev.BaseMoved(payload.after))

    def on_pull_request(routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, PullRequestEvent):
            return
        pull = payload.pull_request
        repo = payload.repository.full_name
        event: ev.Event
        if payload.action == "synchronize":
            # the push happened before this delivery is handled, so after any reading
            # that still saw the old head: a slower reading of that head cannot undo it
            event = ev.PrHeadChanged(pull.number, pull.head.sha, read_at=queues.clock.now())
        elif payload.action == "closed" and not pull.merged:
            by = payload.sender.login if payload.sender is not None else "unknown"
            event = ev.Dequeue(pull.number, by=by, reason="PR closed")
        elif payload.action == "closed":
            # Merged: by the queue's own fast-forward (its build is passed: the engine
            # settles it with FastForwarded / BaseMoved), or by someone outside the queue.
            by = payload.sender.login if payload.sender is not None else "unknown"
            for state in queues.states(repo):
                build = state.build_of(pull.number)
                if state.entry(pull.number) is None or (
                    build is not None and build.state is BuildState.PASSED
                ):
                    continue
                outside = ev.Dequeue(pull.number, by=by, reason="PR merged outside the queue")
                queues.submit(repo, state.base, outside)
            return
        elif payload.action == "edited":
            # A PR retargeted to another base leaves the queues of other bases.
            by = payload.sender.login if payload.sender is not None else "unknown"
            reason = f"the PR's base branch changed to {pull.base.ref}"
            for state in queues.states(repo):
                if state.base != pull.base.ref and state.entry(pull.number) is not None:
                    queues.submit(repo, state.base, ev.Dequeue(pull.number, by=by, reason=reason))
            return
        else:
            return
        for state in queues.states(repo):
            if state.entry(pull.number) is not None:
                queues.submit(repo, state.base, event)

    router.add(on_check_run, "check_run")
    router.add(on_status, "status")
    router.add(on_push, "push")
    router.add(on_pull_request, "pull_request")


def queue_tick(queues: QueueService) -> Callable[[], None]:
    """The periodic task: `Tick()` for every queue with something in it."""

    def tick() -> None:
        for state in queues.states():
            if state.entries or state.builds:
                queues.submit(state.repo, state.base, ev.Tick())

    return tick


def queue_configure(
    queues: QueueService,
    runner: QueueEffectRunner | None,
    refresh_gates: GateRefresher | None = None,
) -> Callable[[Service], None]:
    """A `build_service` configure hook: webhooks, the effect job (when `runner` is given:
    processes that only take webhooks may leave effects to other workers) and the tick."""

    def configure(service: Service) -> None:
        register_queue_events(
            service.router, queues, own_app=None if runner is None else runner.own_app
        )
        if runner is not None:
            service.handlers.register(EFFECT_JOB, runner.handle)
            service.periodic.register_reconciler(
                queue_reconciler(queues, runner.access, runner.own_app, refresh_gates)
            )
        service.periodic.register_queue_tick(queue_tick(queues))

    return configure


def configure_queue(service: Service) -> None:
    """A `build_service` configure hook that builds the queue runtime from the settings."""
    import os

    import httpx

    from trunkline.clock import SystemClock
    from trunkline.queue.composition import runtime_from_settings

    runtime = runtime_from_settings(
        service.settings,
        service.engine,
        SystemClock(),
        http=httpx.Client(timeout=30),  # lives as long as the process
        environ=os.environ,
        redactor=service.redactor,
    )
    queue_configure(runtime.queues, runtime.runner)(service)
