"""The operating commands: `trunkline db upgrade|status`, `trunkline jobs [--dead] [--json]`,
`trunkline jobs retry ID`, run through the real CLI entry point on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trunkline.cli import main
from trunkline.store.engine import make_engine
from trunkline.store.jobs import JobStore, NewJob


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TRUNKLINE_DATA_DIR", str(tmp_path))
    return url


def test_db_status_and_upgrade(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "status"]) == 1
    assert "run `trunkline db upgrade`" in capsys.readouterr().out
    assert main(["jobs"]) == 2  # refuses an old database
    assert "trunkline db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "status"]) == 0


def test_jobs_listing_dead_letter_and_retry(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(database)
    store = JobStore(engine, lease_seconds=30)
    store.enqueue_many([NewJob(kind="k", key="fine"), NewJob(kind="k", key="doomed")])
    for job in store.claim("w", limit=2):
        if job.key == "doomed":
            store.fail(job, "TerminalError: no such repository", dead=True, delay_seconds=0)
    capsys.readouterr()

    assert main(["jobs"]) == 0
    listing = capsys.readouterr().out
    assert "fine" in listing
    assert "doomed" in listing
    assert main(["jobs", "--dead", "--json"]) == 0
    (dead,) = json.loads(capsys.readouterr().out)
    assert (dead["key"], dead["state"]) == ("doomed", "dead")
    assert "no such repository" in dead["last_error"]

    assert main(["jobs", "retry", str(dead["id"])]) == 0
    assert "queued again" in capsys.readouterr().out
    assert main(["jobs", "retry", str(dead["id"])]) == 1
    assert "not dead" in capsys.readouterr().err
    assert main(["jobs", "--dead"]) == 0
    assert "no jobs in state dead" in capsys.readouterr().out
    (queued,) = [record for record in store.list() if record.key == "doomed"]
    assert (queued.state, queued.attempts) == ("queued", 0)
    engine.dispose()
