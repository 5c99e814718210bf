"""`trunkline bench dashboard --json` runs end to end and prints the documented shape (the
figures are measured, never asserted)."""

from __future__ import annotations

import json

import pytest

from trunkline.cli import main


def test_bench_dashboard_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dashboard", "--items", "40", "--repeat", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = result["sqlite"]
    assert figures["items"] == 40
    assert figures["timeline_rows"] == 400
    for name in ("overview", "work_item", "metrics", "live_poll_item", "live_poll_all"):
        assert set(figures[name]) == {"median_ms", "p95_ms"}
    assert result["postgres"].startswith("not measured")
