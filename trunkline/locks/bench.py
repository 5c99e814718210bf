"""`trunkline bench locks`: lease throughput and grant latency under contention.

Performs I/O (a scratch SQLite file or a scratch PostgreSQL database, threads). N threads
each acquire random subsets of three subsystems (max_active 1, 2, 3), hold for a moment and
release; prints grants per second, acquire latency percentiles (ask to grant, including time
spent waiting in line) and the largest number of simultaneous holders seen per subsystem.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from trunkline.locks.leases import LockManager
from trunkline.locks.testing import GrantRecord, acquire_polling, engine_options, max_overlap
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade

CAPACITIES = {"api": 1, "docs": 2, "web": 3}


@dataclass(frozen=True)
class BenchResult:
    backend: str
    threads: int
    grants: int
    seconds: float
    latency_ms: list[float]
    peaks: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        quantiles = statistics.quantiles(self.latency_ms, n=100) if len(self.latency_ms) > 1 else []
        return {
            "backend": self.backend,
            "threads": self.threads,
            "grants": self.grants,
            "seconds": round(self.seconds, 3),
            "grants_per_second": round(self.grants / self.seconds, 1) if self.seconds else None,
            "acquire_ms_p50": round(quantiles[49], 2) if quantiles else None,
            "acquire_ms_p95": round(quantiles[94], 2) if quantiles else None,
            "max_holders": self.peaks,
            "max_active": CAPACITIES,
        }


@contextmanager
def scratch_url(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        from trunkline.store.testing import temporary_postgres

        with temporary_postgres(durable_commits=False) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="trunkline-bench-locks-") as directory:
        yield f"sqlite:///{Path(directory) / 'locks.db'}"


def run(backend: str, threads: int, iterations: int) -> BenchResult:
    import random

    with scratch_url(backend) as url:
        engine = make_engine(url, **engine_options(url))
        try:
            upgrade(engine)
            manager = LockManager(engine)
            records: list[GrantRecord] = []
            latencies: list[float] = []
            guard = threading.Lock()
            errors: list[BaseException] = []

            def work(index: int) -> None:
                rng = random.Random(index)  # noqa: S311 (benchmark workload)
                names = sorted(CAPACITIES)
                try:
                    for _ in range(iterations):
                        chosen = rng.sample(names, rng.randint(1, len(names)))
                        asked = time.monotonic()
                        grant = acquire_polling(
                            manager,
                            "bench/locks",
                            f"t{index}",
                            {name: CAPACITIES[name] for name in chosen},
                            timedelta(seconds=120),
                        )
                        start = time.monotonic()
                        time.sleep(0.001)
                        end = time.monotonic()
                        manager.release("bench/locks", f"t{index}")
                        with guard:
                            latencies.append((start - asked) * 1000)
                            records.append(GrantRecord(f"t{index}", grant.epochs, start, end))
                except BaseException as error:
                    with guard:
                        errors.append(error)

            workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
            began = time.monotonic()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            seconds = time.monotonic() - began
            if errors:
                raise errors[0]
        finally:
            engine.dispose()
    return BenchResult(backend, threads, len(records), seconds, latencies, max_overlap(records))
