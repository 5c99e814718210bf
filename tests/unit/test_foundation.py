"""The foundation: CLI root, settings, clock and errors behave as documented."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trunkline import __version__
from trunkline.cli import main
from trunkline.clock import FakeClock, SystemClock
from trunkline.errors import RetryableError, TerminalError, TrunklineError
from trunkline.settings import load_settings


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"trunkline {__version__}"


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: trunkline" in capsys.readouterr().err


def test_console_entry_point_runs_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trunkline", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "bench" in done.stdout


def test_settings_default_to_sqlite_in_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TRUNKLINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("TRUNKLINE_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.data_dir == tmp_path
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/trunkline.db"


def test_settings_accept_bare_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings().effective_database_url == "postgresql+psycopg://u@h/db"


def test_webhook_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUNKLINE_WEBHOOK_SECRET", "canary-secret-value")
    settings = load_settings()
    assert "canary-secret-value" not in repr(settings)
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "canary-secret-value"


def test_fake_clock_advances_on_sleep_and_records() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    clock = FakeClock(current=start)
    clock.sleep(30)
    clock.sleep(0)
    assert clock.now() == start + timedelta(seconds=30)
    assert clock.sleeps == [30, 0]
    assert clock.monotonic() == 30


def test_fake_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(current=datetime(2026, 5, 1))


def test_system_clock_is_timezone_aware() -> None:
    assert SystemClock().now().tzinfo is not None


def test_error_hierarchy() -> None:
    retry = RetryableError("busy", retry_after=3.0)
    assert isinstance(retry, TrunklineError)
    assert retry.retry_after == 3.0
    assert isinstance(TerminalError("no"), TrunklineError)
    assert not isinstance(retry, TerminalError)
