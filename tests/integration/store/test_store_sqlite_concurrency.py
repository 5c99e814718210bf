"""SQLite under many writer processes: 8 processes x 500 read-modify-write transactions on one
counter must end at exactly 4,000 with no "database is locked" error (BEGIN IMMEDIATE + WAL +
busy_timeout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from trunkline.store.testing import migrated_engine

PROCESSES = 8
TRANSACTIONS = 500

WRITER = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from trunkline.store.engine import make_engine

url, go, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
engine = make_engine(url)
while not go.exists():
    time.sleep(0.01)
for _ in range(count):
    with engine.begin() as conn:  # BEGIN IMMEDIATE
        value = conn.execute(text("SELECT value FROM counter WHERE id = 1")).scalar_one()
        conn.execute(text("UPDATE counter SET value = :v WHERE id = 1"), {"v": value + 1})
engine.dispose()
print("done")
"""


@pytest.mark.slow
def test_eight_processes_of_read_modify_write_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'counter.db'}"
    engine = migrated_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter (id, value) VALUES (1, 0)"))
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(go), str(TRANSACTIONS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        go.write_text("go")
        outcomes = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert "database is locked" not in err
        assert process.returncode == 0, err
        assert out.strip() == "done"
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT value FROM counter")).scalar_one() == PROCESSES * TRANSACTIONS
        )
    engine.dispose()
