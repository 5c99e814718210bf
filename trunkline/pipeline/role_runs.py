"""At most one model run per agent command: the claim and the recorded outcome of each run.

Performs database I/O: one short transaction per call on the item's `work_items` row (its
`data["role_runs"]`, changed under the row's `version` through
`trunkline.agents.work_item_rows.change_data`, so concurrent claims serialize and exactly one
wins). Jobs are delivered at least once (a job whose lease ran out while its worker still
works is claimed again; a job whose result could not be decided is retried), and a role run
spends money, so a delivery of an agent command first asks this ledger:

- `claim(ref, key, token)` -> `Recorded(outcome)`: a run of command `key` completed before;
  the delivery reuses its outcome and never calls the model. `Busy(token)`: another delivery
  holds a live claim (its `expires_at` is ahead); the caller waits, then asks again.
  `Claimed(token)`: this delivery runs the model (no record, or an expired claim of a
  delivery that died; an expired claim is taken over).
- `renew(ref, key, token)` extends a live claim by `ttl` (`ClaimKeeper` does it every
  `ttl / 3` from a thread while the run works); False once the claim is no longer `token`'s.
- `record(ref, key, token, outcome)` stores the outcome (`RoleOutcome`: the result event as
  a JSON document, or the failure code, message and spend; `head`: the commit an executor
  pushed) — only while `token` still holds the claim (False otherwise: a delivery that lost
  its claim reports nothing; the holder reports).
- `release(ref, key, token, spent)` ends an unfinished claim (the run failed before it
  produced anything worth keeping: a retry may run the model again), keeping what it spent
  (exactly, when the live process knows it; else as the last note left it).
- `note(ref, key, token, spent, reserved)` is written before every model call: what the
  command's runs have spent so far and the most the call about to be made can cost. A run
  whose replica dies mid-call (or that is released, or whose claim expires) leaves that
  behind, and the next claim of the command **carries** `spent + reserved`
  (`Claimed.carried`): the next run starts from the item's spend plus what the lost runs
  spent, so a crash loop runs into the item's caps instead of paying again and again. A
  call in flight when its run died is counted at the most it could cost (its real usage is
  unknown). False once the claim is no longer `token`'s: the run must not call the model.
- `left_behind(ref, key)`: that carried figure (reported with a failure that ends the
  command without a run); `live_claim(ref, key)`: a run holds an unexpired claim.

The ledger keeps the most recent `KEEP` records per item (oldest dropped first).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

from sqlalchemy import Engine

from trunkline.agents.work_item_rows import ItemRef, change_data, read_data
from trunkline.clock import Clock
from trunkline.pipeline.model import Spend
from trunkline.pipeline.periodic_renewal import PeriodicRenewal

log = logging.getLogger(__name__)

LEDGER_KEY = "role_runs"
KEEP = 32
RUNNING = "running"
RELEASED = "released"
DONE = "done"
FAILED = "failed"


def _spend_json(spend: Spend) -> dict[str, Any]:
    return {"tokens": spend.tokens, "usd": str(spend.usd)}


def _spend_of(document: Any) -> Spend:
    if not isinstance(document, dict):
        return Spend()
    return Spend(int(document.get("tokens") or 0), Decimal(str(document.get("usd") or "0")))


def _left_behind(entry: dict[str, Any] | None) -> Spend:
    """What an unfinished run (running, expired or released) spent, counting its reserved
    call at the most it could cost."""
    if entry is None or entry.get("state") not in (RUNNING, RELEASED):
        return Spend()
    spent, reserved = _spend_of(entry.get("spent")), _spend_of(entry.get("reserved"))
    return Spend(spent.tokens + reserved.tokens, spent.usd + reserved.usd)


@dataclass(frozen=True)
class RoleOutcome:
    """What a completed role run produced: the event it answered with (`event`, a JSON
    document of `trunkline.pipeline.serialization.encode_event`; None: nothing to report),
    or the failure it escalated with (`code`, `message`, `tokens`, `usd`). `head`: the commit
    the executor pushed."""

    event: dict[str, Any] | None = None
    code: str | None = None
    message: str = ""
    tokens: int = 0
    usd: Decimal = Decimal(0)
    head: str | None = None

    @property
    def failed(self) -> bool:
        return self.code is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "code": self.code,
            "message": self.message,
            "tokens": self.tokens,
            "usd": str(self.usd),
            "head": self.head,
        }

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> RoleOutcome:
        return cls(
            event=data.get("event"),
            code=data.get("code"),
            message=str(data.get("message") or ""),
            tokens=int(data.get("tokens") or 0),
            usd=Decimal(str(data.get("usd") or "0")),
            head=data.get("head"),
        )


@dataclass(frozen=True)
class Claimed:
    token: str
    carried: Spend = field(default_factory=Spend)  # what earlier, unfinished runs spent


@dataclass(frozen=True)
class Busy:
    holder: str
    expires_at: datetime


@dataclass(frozen=True)
class Recorded:
    outcome: RoleOutcome


Claim = Claimed | Busy | Recorded


def _prune(ledger: dict[str, Any]) -> dict[str, Any]:
    if len(ledger) <= KEEP:
        return ledger
    newest = sorted(ledger.items(), key=lambda entry: str(entry[1].get("at", "")))[-KEEP:]
    return dict(newest)


@dataclass
class RoleRunLedger:
    """The claims and outcomes of the agent role runs, per work item."""

    engine: Engine
    clock: Clock
    ttl: timedelta = timedelta(seconds=30)

    def _change(self, ref: ItemRef, key: str, apply: Any) -> Any:
        """Run `apply(entry | None, now) -> (new entry | None to keep, result)` on the entry
        of `key` in one optimistic write; returns the result."""
        outcome: list[Any] = []

        def change(data: dict[str, Any]) -> dict[str, Any]:
            outcome.clear()
            ledger = dict(data.get(LEDGER_KEY) or {})
            entry, result = apply(ledger.get(key), self.clock.now())
            outcome.append(result)
            if entry is None:
                return data
            if entry == "delete":
                ledger.pop(key, None)
            else:
                ledger[key] = entry
            return {**data, LEDGER_KEY: _prune(ledger)}

        change_data(self.engine, ref, change)
        return outcome[0]

    def claim(self, ref: ItemRef, key: str, token: str) -> Claim:
        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, Claim]:
            if entry is not None and entry.get("state") in (DONE, FAILED):
                return None, Recorded(RoleOutcome.of_json(entry.get("outcome") or {}))
            running = entry is not None and entry.get("state") == RUNNING
            if entry is not None and running and entry.get("token") != token:
                expires = datetime.fromisoformat(str(entry["expires_at"]))
                if expires > now:
                    return None, Busy(str(entry.get("token")), expires)
                log.warning(
                    "role run claim expired; taken over",
                    extra={"item": ref.key, "command": key, "previous": entry.get("token")},
                )
            carried = _left_behind(entry)
            claim = {
                "state": RUNNING,
                "token": token,
                "expires_at": (now + self.ttl).isoformat(),
                "at": now.isoformat(),
                "spent": _spend_json(carried),
                "reserved": _spend_json(Spend()),
            }
            return claim, Claimed(token, carried)

        result: Claim = self._change(ref, key, apply)
        return result

    def renew(self, ref: ItemRef, key: str, token: str) -> bool:
        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, bool]:
            if entry is None or entry.get("state") != RUNNING or entry.get("token") != token:
                return None, False
            return {**entry, "expires_at": (now + self.ttl).isoformat()}, True

        renewed: bool = self._change(ref, key, apply)
        return renewed

    def note(self, ref: ItemRef, key: str, token: str, spent: Spend, reserved: Spend) -> bool:
        """Before a model call: the command's spend so far (`carried` included) and the most
        the call can cost; renews the claim. False once the claim is not `token`'s."""

        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, bool]:
            if entry is None or entry.get("state") != RUNNING or entry.get("token") != token:
                return None, False
            noted = {
                **entry,
                "spent": _spend_json(spent),
                "reserved": _spend_json(reserved),
                "expires_at": (now + self.ttl).isoformat(),
            }
            return noted, True

        noted: bool = self._change(ref, key, apply)
        return noted

    def record(self, ref: ItemRef, key: str, token: str, outcome: RoleOutcome) -> bool:
        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, bool]:
            if entry is None or entry.get("state") != RUNNING or entry.get("token") != token:
                return None, False
            state = FAILED if outcome.failed else DONE
            return {"state": state, "outcome": outcome.as_json(), "at": now.isoformat()}, True

        recorded: bool = self._change(ref, key, apply)
        return recorded

    def release(self, ref: ItemRef, key: str, token: str, spent: Spend | None = None) -> None:
        """End `token`'s unfinished claim, keeping what the command's runs spent: `spent`
        when the caller knows it exactly (no call in flight), else the last note's spend
        plus its reserved call."""

        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, None]:
            if entry is None or entry.get("state") != RUNNING or entry.get("token") != token:
                return None, None
            kept = _left_behind(entry) if spent is None else spent
            released = {
                "state": RELEASED,
                "spent": _spend_json(kept),
                # for a replica of an older version, which reads these of any unfinished entry
                "token": "",
                "expires_at": now.isoformat(),
            }
            return {**released, "at": now.isoformat()}, None

        self._change(ref, key, apply)

    def left_behind(self, ref: ItemRef, key: str) -> Spend:
        """What unfinished runs of `key` spent that no report carried (a call in flight at
        its worst case); nothing once an outcome is recorded."""
        entry = (read_data(self.engine, ref).get(LEDGER_KEY) or {}).get(key)
        return _left_behind(entry)

    def live_claim(self, ref: ItemRef, key: str) -> bool:
        """True while a run holds an unexpired claim on `key` (it may still answer)."""
        entry = (read_data(self.engine, ref).get(LEDGER_KEY) or {}).get(key)
        if entry is None or entry.get("state") != RUNNING:
            return False
        return datetime.fromisoformat(str(entry["expires_at"])) > self.clock.now()

    def forget(self, ref: ItemRef, key: str) -> None:
        """Drop a recorded outcome whose work cannot be recovered (the executor's commit
        is neither on the branch nor in this replica's repository): the run is made again."""

        def apply(entry: dict[str, Any] | None, now: datetime) -> tuple[Any, None]:
            if entry is None or entry.get("state") in (RUNNING, RELEASED):
                return None, None
            return "delete", None

        self._change(ref, key, apply)

    def outcome(self, ref: ItemRef, key: str) -> RoleOutcome | None:
        """The recorded outcome of `key` (None: not completed)."""
        entry = (read_data(self.engine, ref).get(LEDGER_KEY) or {}).get(key)
        if entry is None or entry.get("state") not in (DONE, FAILED):
            return None
        return RoleOutcome.of_json(entry.get("outcome") or {})


@dataclass
class ClaimKeeper:
    """Renews a claim every `ttl / 3` from a thread while the `with` block runs; `lost` once
    a renewal found the claim taken over (the run should stop and report nothing)."""

    ledger: RoleRunLedger
    ref: ItemRef
    key: str
    token: str
    _lost: threading.Event = field(default_factory=threading.Event)
    _renewal: PeriodicRenewal | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def beat(self) -> bool:
        """Renew once; False once the claim is lost."""
        if self._lost.is_set():
            return False
        try:
            if not self.ledger.renew(self.ref, self.key, self.token):
                log.warning("role run claim lost", extra={"command": self.key})
                self._lost.set()
                return False
        except Exception as error:  # a busy database: try again next beat
            log.warning("role run claim renewal failed", extra={"error": str(error)[:300]})
        return True

    def __enter__(self) -> ClaimKeeper:
        if self._renewal is not None:
            raise RuntimeError("a ClaimKeeper runs one block only")
        period = self.ledger.ttl.total_seconds() / 3
        name = f"role-run-claim-{self.key[-40:]}"
        self._renewal = PeriodicRenewal(self.beat, period, name).__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._renewal is not None:
            self._renewal.__exit__(kind, error, traceback)


@dataclass
class RunClaim:
    """The claim one delivery holds on command `key` while it runs the model."""

    ledger: RoleRunLedger
    ref: ItemRef
    key: str
    token: str
    carried: Spend = field(default_factory=Spend)
    recorded: bool = False
    settled: Spend | None = None  # the command's exact spend after the last answered call

    def note(self, spent: Spend, reserved: Spend) -> bool:
        """Before a model call (see `RoleRunLedger.note`); False: do not call the model."""
        self.settled = None  # a call is about to be in flight
        return self.ledger.note(self.ref, self.key, self.token, spent, reserved)

    def settle(self, spent: Spend) -> None:
        """After a call was answered: the command's exact spend (kept in memory; a release
        by this live process records it instead of the call's worst case)."""
        self.settled = spent

    def release(self) -> None:
        """The run failed without an outcome worth keeping; what it spent stays counted."""
        self.ledger.release(self.ref, self.key, self.token, self.settled)

    def left_behind(self) -> Spend:
        return self.ledger.left_behind(self.ref, self.key)

    def record(self, outcome: RoleOutcome) -> bool:
        """Store the run's outcome; False when the claim was taken over (report nothing)."""
        if self.recorded:
            return True
        self.recorded = self.ledger.record(self.ref, self.key, self.token, outcome)
        return self.recorded
