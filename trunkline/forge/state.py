"""The forge's state: every record in memory under one lock, saved as a JSON snapshot.

`ForgeState` owns the tables (dicts of records from `trunkline.forge.models`), the id
sequence, and the forge clock. Callers mutate records only inside `with state.lock:` and
call `state.save()` afterwards; `save` writes `DATA/forge-state.json` atomically (temporary
file + rename), so a restart with the same data directory keeps everything. A running
forge turns on autosave: `save` then only marks the state dirty and a thread writes the
snapshot within 50 ms (bursts coalesce); `close` flushes, so a clean stop loses nothing
and a crash loses at most the last 50 ms. Bare git
repositories live next to it under `DATA/git/OWNER/NAME.git`.

The forge clock is the system clock plus an offset that an admin endpoint can move forward
(tests expire tokens that way); it satisfies `trunkline.clock.Clock`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from trunkline.forge import models as m

SNAPSHOT_NAME = "forge-state.json"

R = TypeVar("R")


class ForgeClock:
    """System time plus an adjustable offset (never goes backwards)."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_seconds)

    def timestamp(self) -> float:
        return time.time() + self.offset_seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_seconds

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the forge clock only moves forward")
        self.offset_seconds += seconds


_TABLES: dict[str, type[Any]] = {
    "users": m.User,
    "apps": m.App,
    "installations": m.Installation,
    "tokens": m.Token,
    "repos": m.Repo,
    "labels": m.Label,
    "issues": m.Issue,
    "comments": m.Comment,
    "issue_events": m.IssueEvent,
    "reviews": m.Review,
    "review_comments": m.ReviewComment,
    "statuses": m.CommitStatus,
    "check_suites": m.CheckSuite,
    "check_runs": m.CheckRun,
}


class ForgeState:
    """All forge records; see the module docstring for the locking and saving contract."""

    def __init__(self, data_dir: Path, clock: ForgeClock | None = None) -> None:
        self.data_dir = data_dir
        self.clock = clock or ForgeClock()
        self.lock = threading.RLock()
        self.next_id = 1
        self.users: dict[int, m.User] = {}
        self.apps: dict[int, m.App] = {}
        self.installations: dict[int, m.Installation] = {}
        self.tokens: dict[str, m.Token] = {}
        self.repos: dict[int, m.Repo] = {}
        self.labels: dict[int, m.Label] = {}
        self.issues: dict[int, m.Issue] = {}
        self.comments: dict[int, m.Comment] = {}
        self.issue_events: dict[int, m.IssueEvent] = {}
        self.reviews: dict[int, m.Review] = {}
        self.review_comments: dict[int, m.ReviewComment] = {}
        self.statuses: dict[int, m.CommitStatus] = {}
        self.check_suites: dict[int, m.CheckSuite] = {}
        self.check_runs: dict[int, m.CheckRun] = {}
        self.settings: dict[str, Any] = {}  # forge-wide knobs (webhook faults, etc.)
        self._dirty = threading.Condition()
        self._pending = False
        self._saver: threading.Thread | None = None
        self._closing = False
        self._write_lock = threading.Lock()
        self._issue_index: dict[tuple[int, int], int] = {}

    # ---- persistence -------------------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        return self.data_dir / SNAPSHOT_NAME

    @property
    def git_root(self) -> Path:
        return self.data_dir / "git"

    @classmethod
    def open(cls, data_dir: Path) -> ForgeState:
        """Load the snapshot in `data_dir` if there is one, else an empty state."""
        data_dir.mkdir(parents=True, exist_ok=True)
        state = cls(data_dir)
        path = state.snapshot_path
        if path.exists():
            raw = json.loads(path.read_text(encoding="utf-8"))
            state.next_id = int(raw["next_id"])
            state.clock.offset_seconds = float(raw.get("clock_offset", 0.0))
            state.settings = dict(raw.get("settings", {}))
            for table, record_type in _TABLES.items():
                rows = raw.get(table, [])
                target: dict[Any, Any] = getattr(state, table)
                for row in rows:
                    record = record_type(**row)
                    key = record.token if table == "tokens" else record.id
                    target[key] = record
        return state

    def start_autosave(self, delay_seconds: float = 0.05) -> None:
        """From now on `save()` only marks the state dirty; a thread writes the snapshot
        within `delay_seconds` (coalescing bursts of writes). `close()` flushes."""
        self._saver = threading.Thread(
            target=self._autosave, args=(delay_seconds,), name="forge-saver", daemon=True
        )
        self._saver.start()

    def _autosave(self, delay: float) -> None:
        while True:
            with self._dirty:
                while not self._pending and not self._closing:
                    self._dirty.wait()
                if self._closing:
                    return
            time.sleep(delay)
            with self._dirty:
                self._pending = False
            self.flush()

    def close(self) -> None:
        """Stop the autosave thread and write the snapshot."""
        with self._dirty:
            self._closing = True
            self._dirty.notify_all()
        if self._saver is not None:
            self._saver.join(timeout=30)
            self._saver = None
        self.flush()

    def save(self) -> None:
        """Record that the state changed: write now, or soon when autosave runs."""
        if self._saver is not None and not self._closing:
            with self._dirty:
                self._pending = True
                self._dirty.notify_all()
            return
        self.flush()

    def flush(self) -> None:
        """Write the snapshot atomically (temporary file + rename)."""
        with self._write_lock:  # snapshots are written in the order they were taken
            with self.lock:
                payload: dict[str, Any] = {
                    "next_id": self.next_id,
                    "clock_offset": self.clock.offset_seconds,
                    "settings": dict(self.settings),
                }
                for table in _TABLES:
                    values = getattr(self, table).values()
                    payload[table] = [_row(v) for v in values]
            text = json.dumps(payload, separators=(",", ":"))
            tmp = self.snapshot_path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.snapshot_path)

    # ---- ids and time ------------------------------------------------------------------

    def new_id(self) -> int:
        with self.lock:
            value = self.next_id
            self.next_id += 1
            return value

    def now(self) -> float:
        return self.clock.timestamp()

    # ---- lookups -----------------------------------------------------------------------

    def user_by_login(self, login: str) -> m.User | None:
        lowered = login.lower()
        for user in self.users.values():
            if user.login.lower() == lowered:
                return user
        return None

    def repo_by_name(self, owner: str, name: str) -> m.Repo | None:
        owner_user = self.user_by_login(owner)
        if owner_user is None:
            return None
        lowered = name.lower()
        for repo in self.repos.values():
            if repo.owner_id == owner_user.id and repo.name.lower() == lowered:
                return repo
        return None

    def repo_full_name(self, repo: m.Repo) -> str:
        return f"{self.users[repo.owner_id].login}/{repo.name}"

    def repo_git_path(self, repo: m.Repo) -> Path:
        return self.git_root / self.users[repo.owner_id].login / f"{repo.name}.git"

    def issue(self, repo: m.Repo, number: int) -> m.Issue | None:
        """The issue or pull request `number` of `repo` (an index, rebuilt on a miss)."""
        with self.lock:
            found = self.issues.get(self._issue_index.get((repo.id, number), 0))
            if found is not None and found.repo_id == repo.id and found.number == number:
                return found
            self._issue_index = {(i.repo_id, i.number): i.id for i in self.issues.values()}
            return self.issues.get(self._issue_index.get((repo.id, number), 0))

    def repo_labels(self, repo: m.Repo) -> list[m.Label]:
        return sorted((x for x in self.labels.values() if x.repo_id == repo.id), key=_by_id)

    def label_by_name(self, repo: m.Repo, name: str) -> m.Label | None:
        lowered = name.lower()
        for label in self.labels.values():
            if label.repo_id == repo.id and label.name.lower() == lowered:
                return label
        return None

    def installation_for_repo(self, repo: m.Repo) -> m.Installation | None:
        for inst in self.installations.values():
            if repo.id in inst.repository_ids:
                return inst
        return None

    def app_bot(self, app: m.App) -> m.User:
        return self.users[app.bot_user_id]

    def permission(self, repo: m.Repo, user: m.User) -> m.Permission:
        if user.id == repo.owner_id:
            return m.Permission.ADMIN
        return m.Permission(repo.permissions.get(str(user.id), 0))


def _row(record: Any) -> dict[str, Any]:
    """A snapshot row: the record's fields, with lists and dicts copied (cheap, no deepcopy)."""
    return {
        key: list(value)
        if isinstance(value, list)
        else dict(value)
        if isinstance(value, dict)
        else value
        for key, value in vars(record).items()
    }


def _by_id(record: Any) -> int:
    return int(record.id)
