"""`trunkline locks [--repo R] [--json]` on a real database."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from trunkline.cli import main
from trunkline.locks.leases import Grant, LockManager, Waiting
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'locks.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRUNKLINE_DATABASE_URL", url)
    monkeypatch.setenv("TRUNKLINE_DATA_DIR", str(tmp_path / "data"))
    return url


def test_unmigrated_database_gets_the_stores_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRUNKLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["locks"]) == 2
    assert "trunkline db upgrade" in capsys.readouterr().err


def test_lists_holders_epochs_expiry_and_waiters(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    repo = f"acme/{uuid.uuid4().hex[:8]}"
    other_repo = f"acme/{uuid.uuid4().hex[:8]}"
    try:
        locks = LockManager(engine)
        held = locks.acquire(repo, "item-12", {"api": 1, "docs": 2}, timedelta(minutes=10))
        assert isinstance(held, Grant)
        assert isinstance(
            locks.acquire(repo, "item-13", {"api": 1}, timedelta(minutes=10)), Waiting
        )
        assert isinstance(
            locks.acquire(other_repo, "item-1", {"web": 1}, timedelta(minutes=10)), Grant
        )
    finally:
        engine.dispose()

    assert main(["locks", "--repo", repo]) == 0
    table = capsys.readouterr().out
    assert "item-12" in table
    assert "item-13" in table  # the waiter
    assert other_repo not in table
    api_line = next(line for line in table.splitlines() if " api " in line and "item-12" in line)
    assert f" {held.epochs['api']} " in api_line
    assert "in " in api_line  # expiry shown relative to the database clock

    assert main(["locks", "--repo", repo, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    leases = {
        (row["subsystem"], row["holder"], row["epoch"], row["live"]) for row in document["leases"]
    }
    assert leases == {
        ("api", "item-12", held.epochs["api"], True),
        ("docs", "item-12", held.epochs["docs"], True),
    }
    assert [(row["subsystem"], row["holder"]) for row in document["waiters"]] == [
        ("api", "item-13")
    ]

    assert main(["locks", "--json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert {row["repo"] for row in everything["leases"]} >= {repo, other_repo}
