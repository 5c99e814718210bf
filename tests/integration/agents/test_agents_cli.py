"""`trunkline bench agents` runs and prints its figures."""

from __future__ import annotations

import json

import pytest
from prerequisites import require_bwrap

from trunkline.cli import main


def test_agents_bench_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    require_bwrap()
    assert main(["bench", "agents", "--commands", "2", "--turns", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["loop_turns"] == 4
    assert figures["sandbox_command_median_ms"] > 0
    assert figures["sanitize_mb_per_s"] > 0
