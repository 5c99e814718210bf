"""`trunkline bench intake --json` runs end to end and prints the documented shape (the figures
themselves are measured, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prerequisites import POSTGRES_ADMIN_URL, postgres_reachable


@pytest.mark.slow
def test_bench_intake_prints_figures_for_each_target() -> None:
    command = [sys.executable, "-m", "trunkline", "bench", "intake", "--json"]
    options = ["--seconds", "0.5", "--clients", "2", "--postgres-admin-url", POSTGRES_ADMIN_URL]
    done = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == ["sqlite", "postgres", "bare"]
    targets = ["sqlite", "bare"] + (["postgres"] if postgres_reachable() else [])
    for target in targets:
        figures = result[target]
        assert set(figures) >= {"deliveries_per_s", "p50_ms", "p99_ms"}
        assert figures["requests"] > 0
        assert figures["errors"] == 0
    if not postgres_reachable():
        assert result["postgres"] is None
