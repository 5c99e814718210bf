"""Group commit for webhook intake: one writer thread stores deliveries in batched transactions.

Performs database I/O on its own thread. Request handlers `submit` a delivery and wait for its
future; the writer takes whatever has queued up (up to `max_batch`), records every delivery and
its job in ONE transaction, commits once, then resolves the futures. Under load this turns many
small fsyncs into one and keeps a single SQLite writer (no lock convoy); with no load a batch is
one delivery and the latency is one transaction. A future resolves only after its transaction
committed, so a 202 is never sent for a delivery that is not durable. If a batch fails, its
deliveries are retried one per transaction so one bad row cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from trunkline.store.deliveries import IncomingDelivery, record_rows

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    delivery: IncomingDelivery
    future: Future[bool] | asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop | None


class WriterStoppedError(RuntimeError):
    """The writer was stopped; the delivery was not stored."""


class DeliveryWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 256,
        on_committed: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.on_committed = on_committed
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._buffers: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._raw: Any = None
        self._checkpointer = _Checkpointer(engine)

    def _ensure_running(self) -> None:
        """Start the writer thread on first use; raise once stopped. Call with `_lock` held."""
        if self._stopped:
            raise WriterStoppedError("the delivery writer is stopped")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="delivery-writer", daemon=True)
            self._thread.start()

    def _enqueue(self, pending: _Pending) -> None:
        with self._lock:
            self._ensure_running()
            self._queue.put([pending])

    def submit(self, delivery: IncomingDelivery) -> Future[bool]:
        """Queue `delivery` from any thread; the future says whether it was new."""
        future: Future[bool] = Future()
        try:
            self._enqueue(_Pending(delivery, future, None))
        except WriterStoppedError as error:
            future.set_exception(error)
        return future

    async def store(self, delivery: IncomingDelivery) -> bool:
        """Store `delivery` from a coroutine; True if new, False if its id was already stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            self._ensure_running()
            buffer = self._buffers.get(loop)
            if buffer is None:
                # Requests handled in the same loop iteration travel to the writer together.
                buffer = self._buffers[loop] = []
                loop.call_soon(self._flush, loop)
            buffer.append(_Pending(delivery, future, loop))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._buffers.pop(loop, [])
            if not self._stopped:
                self._queue.put(batch)
                return
        for item in batch:
            if not item.future.done():
                item.future.set_exception(WriterStoppedError("the delivery writer is stopped"))

    def stop(self, timeout: float = 10.0) -> None:
        """Store what was submitted so far, then end the writer thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._checkpointer.stop()
            raw, self._raw = self._raw, None
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = list(first)
            stop_after = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop_after = True
                    break
                batch.extend(more)
            if batch:
                self._write(batch)
            if stop_after:
                return

    def _write(self, batch: list[_Pending]) -> None:
        try:
            results = self._commit([item.delivery for item in batch])
        except Exception as error:
            self._discard_connection()
            if len(batch) > 1:
                log.warning("delivery batch failed; storing one by one", exc_info=True)
                for item in batch:
                    self._write([item])
                return
            log.exception(
                "could not store delivery", extra={"delivery": batch[0].delivery.delivery_id}
            )
            _settle(batch, [RuntimeError(f"the delivery could not be stored: {error}")])
            return
        _settle(batch, results)
        self._checkpointer.note_rows(len(batch))
        created = sum(1 for result in results if result)
        if created and self.on_committed is not None:
            try:
                self.on_committed(created)
            except Exception:
                log.exception("on_committed callback failed")

    def _commit(self, deliveries: list[IncomingDelivery]) -> list[bool]:
        """One transaction on the writer's own DB-API connection (kept for the thread's life)."""
        sqlite = self.engine.dialect.name == "sqlite"
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            if sqlite:
                # Checkpoints (and their fsyncs) run on the checkpointer thread instead.
                self._raw.cursor().execute("PRAGMA wal_autocheckpoint = 0")
                self._checkpointer.start()
        raw = self._raw
        cursor = raw.cursor()
        try:
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
                now = datetime.now(UTC)  # SQLite's clock is this host's clock
            else:
                cursor.execute("SELECT now()")
                row = cursor.fetchone()
                assert row is not None
                now = row[0]
            try:
                results = record_rows(cursor, sqlite, deliveries, now)
            except BaseException:
                if sqlite:
                    cursor.execute("ROLLBACK")
                else:
                    raw.rollback()
                raise
            if sqlite:
                cursor.execute("COMMIT")
            else:
                raw.commit()
            return results
        finally:
            cursor.close()

    def _discard_connection(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()


class _Checkpointer:
    """SQLite only: copies the WAL back into the database file off the intake path.

    The writer's connection has automatic checkpoints switched off (they would put an fsync
    into some request's latency); this thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its
    own connection after every `rows_per_checkpoint` rows or `interval` seconds. PASSIVE
    never blocks readers or the writer. Other processes keep SQLite's automatic checkpoints.
    """

    def __init__(
        self, engine: Engine, *, rows_per_checkpoint: int = 1000, interval: float = 1.0
    ) -> None:
        self.engine = engine
        self.rows_per_checkpoint = rows_per_checkpoint
        self.interval = interval
        self._rows = 0
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def note_rows(self, count: int) -> None:
        if self._thread is None:
            return
        self._rows += count
        if self._rows >= self.rows_per_checkpoint:
            self._due.set()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        raw = self.engine.raw_connection()
        try:
            while not self._stop.is_set():
                self._due.wait(self.interval)
                self._due.clear()
                if self._rows == 0:
                    continue
                self._rows = 0
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except Exception:
                    log.warning("WAL checkpoint failed", exc_info=True)
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            with contextlib.suppress(Exception):
                raw.close()


def _settle(batch: list[_Pending], results: Sequence[bool | Exception]) -> None:
    """Resolve the futures of a batch: thread futures directly, asyncio ones per loop at once."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], Any]]] = {}
    for index, item in enumerate(batch):
        outcome = results[index] if len(results) == len(batch) else results[0]
        if item.loop is None:
            future = item.future
            assert isinstance(future, Future)
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        else:
            assert isinstance(item.future, asyncio.Future)
            per_loop.setdefault(item.loop, []).append((item.future, outcome))
    for loop, outcomes in per_loop.items():
        # A closed loop raises RuntimeError: nobody waits for those futures any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_in_loop, outcomes)


def _settle_in_loop(outcomes: list[tuple[asyncio.Future[bool], Any]]) -> None:
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
