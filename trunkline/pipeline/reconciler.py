"""The dispatch pipeline's level-triggered reconciler: lost `issues` webhooks only delay work.

Performs I/O: GitHub reads through the port of each repository's installation, database reads
(work items, the stored deliveries) and `PipelineService.submit`. GitHub does not redeliver a
webhook that failed while the bot was down, so a lost `issues.labeled` would leave a labeled
issue unstarted forever and a lost `unlabeled` would leave an item running that should have
been cancelled. Every tick (a leader-only periodic task, `RECONCILE_TICK_SECONDS`), for every
repository the bot has seen (work items, installations noted by the webhook handlers, stored
deliveries):

- **Labels.** The open issues carrying the policy's dispatch label (`list_issues`, most
  recently updated first, at most `issues_per_repository`; pull requests skipped) that have
  no live work item: the latest `labeled` event of that label in the issue's event log gives
  who applied it; their permission is read through the API and the same `Labeled` the webhook
  handler would submit is submitted. An issue whose item is terminal is relabeled only when
  that event is newer than the item's last change (`WorkItem.updated_at`): an escalated
  item keeps its label, and a refused label is not refused again on every tick. A real
  webhook arriving late decides to "no change" (the state machine's duplicate rules).
- **Label removals.** Live items still before execution whose issue no longer carries the
  label (re-read with `get_issue`, so a stale list never cancels): `Unlabeled` by the actor of
  the latest `unlabeled` event (`someone` when the log names none). At most
  `issues_per_repository` such items per repository per tick.

A repository whose policy does not load or whose GitHub calls fail is logged and skipped
until the next tick; the others are still reconciled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select

from trunkline.bot.dispatch_handlers import policy_permission
from trunkline.clock import Clock
from trunkline.errors import TrunklineError
from trunkline.github.model import Issue, IssueEvent
from trunkline.github.port import GitHubPort
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.states import BEFORE_EXECUTION, TERMINAL
from trunkline.store.tables import Delivery

log = logging.getLogger(__name__)

RECONCILE_TICK_SECONDS = 60.0
ISSUES_PER_REPOSITORY = 100
#: How often the (unindexed) scan of stored deliveries for repositories is repeated.
DELIVERY_SCAN_SECONDS = 600.0


@dataclass(frozen=True)
class Healed:
    """One event the reconciler submitted because its webhook never arrived."""

    repo: str
    issue: int
    event: str  # "labeled" or "unlabeled"
    by: str


def latest_label_event(events: Iterable[IssueEvent], kind: str, label: str) -> IssueEvent | None:
    """The last `kind` (`labeled` / `unlabeled`) event of `label` (names compared as GitHub
    does, case-insensitively) in an event log listed oldest first."""
    wanted = label.casefold()
    found = None
    for event in events:
        if event.event == kind and (event.label or "").casefold() == wanted:
            found = event
    return found


def delivery_installations(service: PipelineService) -> dict[str, int]:
    """Repository -> the installation named by its newest stored delivery."""
    newest = func.max(Delivery.id)
    with service.engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.repo_full_name, Delivery.installation_id, newest)
            .where(Delivery.repo_full_name.is_not(None), Delivery.installation_id.is_not(None))
            .group_by(Delivery.repo_full_name, Delivery.installation_id)
        ).all()
    chosen: dict[str, tuple[int, int]] = {}
    for repo, installation, last_id in rows:
        if repo is None or installation is None:
            continue
        if repo not in chosen or last_id > chosen[repo][0]:
            chosen[repo] = (int(last_id), int(installation))
    return {repo: installation for repo, (_, installation) in chosen.items()}


@dataclass
class LabelReconciler:
    """See the module docstring. `installation_for`: the installation noted for a repository
    (`RepositoryPolicies.installation`); `note_installation` is told the one used, so the
    policy read by `submit` goes through it; `noted_repositories`: those noted so far."""

    service: PipelineService
    github_for: Callable[[int | None], GitHubPort]
    clock: Clock
    installation_for: Callable[[str], int | None]
    note_installation: Callable[[str, int | None], None]
    noted_repositories: Callable[[], Iterable[str]] = tuple
    issues_per_repository: int = ISSUES_PER_REPOSITORY
    delivery_scan_seconds: float = DELIVERY_SCAN_SECONDS
    _deliveries: Mapping[str, int] = field(default_factory=dict)
    _scanned_at: float | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> list[Healed]:
        """Reconcile every known repository; returns what was healed (also logged)."""
        deliveries = self._delivery_installations()
        repos = set(self.service.repositories()) | set(self.noted_repositories())
        repos |= set(deliveries)
        healed: list[Healed] = []
        for repo in sorted(repos):
            installation = self.installation_for(repo)
            if installation is None:
                installation = deliveries.get(repo)
            if installation is None:
                continue  # nothing tells which installation may read it
            self.note_installation(repo, installation)
            try:
                healed += self.reconcile(repo, installation)
            except TrunklineError as error:
                log.warning(
                    "dispatch reconciliation of a repository failed; next tick tries again",
                    extra={"repo": repo, "error": str(error)},
                )
        if healed:
            log.info(
                "dispatch reconciler healed lost issue webhooks",
                extra={"healed": [f"{h.repo}#{h.issue} {h.event} by {h.by}" for h in healed]},
            )
        return healed

    def reconcile(self, repo: str, installation: int | None) -> list[Healed]:
        """One repository: start missed labels, cancel missed removals (see module doc)."""
        label = self.service.config_for(repo).dispatch_label
        github = self.github_for(installation)
        listed = [
            issue
            for issue in github.list_issues(
                repo, labels=(label,), state="open", limit=self.issues_per_repository
            )
            if not issue.is_pull_request
        ]
        items = {item.issue: item for item in self.service.items(repo)}
        healed: list[Healed] = []
        for issue in listed:
            found = self._label_missed(github, repo, issue, items.get(issue.number), label)
            if found is not None:
                healed.append(self._submit_label(github, repo, installation, issue, found, label))
        labeled = {issue.number for issue in listed}
        waiting = [
            item
            for item in sorted(items.values(), key=lambda item: item.issue)
            if item.state in BEFORE_EXECUTION and item.issue not in labeled
        ]
        for item in waiting[: self.issues_per_repository]:
            current = github.get_issue(repo, item.issue)
            if any(name.casefold() == label.casefold() for name in current.labels):
                continue  # still labeled (the list was bounded or stale)
            removed = latest_label_event(
                github.list_issue_events(repo, item.issue), "unlabeled", label
            )
            by = removed.actor.login if removed is not None else "someone"
            self.service.submit(repo, item.issue, ev.Unlabeled(by, label))
            healed.append(Healed(repo, item.issue, "unlabeled", by))
            log.info(
                "missed label removal submitted",
                extra={"repo": repo, "issue": item.issue, "by": by},
            )
        return healed

    def _label_missed(
        self, github: GitHubPort, repo: str, issue: Issue, item: WorkItem | None, label: str
    ) -> IssueEvent | None:
        """The `labeled` event no decision has seen yet (None: nothing was missed)."""
        if item is not None and item.state not in TERMINAL:
            return None  # live: the label was seen
        applied = latest_label_event(github.list_issue_events(repo, issue.number), "labeled", label)
        if applied is None or applied.actor.is_bot:
            return None  # no one to attribute the label to, or a bot's (it starts nothing)
        if item is None:
            return applied
        if applied.created_at is None or applied.created_at <= item.updated_at:
            return None  # the label the item's last decision already saw
        return applied

    def _submit_label(
        self,
        github: GitHubPort,
        repo: str,
        installation: int | None,
        issue: Issue,
        applied: IssueEvent,
        label: str,
    ) -> Healed:
        login = applied.actor.login
        permission = policy_permission(github.get_permission(repo, login))
        self.service.submit(
            repo,
            issue.number,
            ev.Labeled(repo, issue.number, login, permission, label),
            installation_id=installation,
            title=issue.title,
        )
        log.info(
            "missed label submitted",
            extra={"repo": repo, "issue": issue.number, "by": login},
        )
        return Healed(repo, issue.number, "labeled", login)

    def _delivery_installations(self) -> Mapping[str, int]:
        now = self.clock.monotonic()
        with self._guard:
            fresh = (
                self._scanned_at is not None and now - self._scanned_at < self.delivery_scan_seconds
            )
            if fresh:
                return self._deliveries
        scanned = delivery_installations(self.service)
        with self._guard:
            self._deliveries, self._scanned_at = scanned, now
        return scanned
