"""Acceptance: the demo scenario through real processes, asserted on the facts it reads back.

`trunkline demo --json` runs as a subprocess: it starts the forge (`trunkline forge`) and the
bot (`trunkline serve`, SQLite, the production composition, bubblewrap) as processes of their
own, talks to both over HTTP, and prints one JSON object. The facts in it are read from git,
the forge's check runs and push log, the lock history and the approvals table (see
trunkline/demo/facts.py), not from the bot's opinion of itself.

The restart test runs the same scenario in-process (`run_demo` with a hook) while the bot is
SIGKILLed five times at seeded random moments and restarted, and compares the outcome with
the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prerequisites import require_bwrap

from trunkline.demo.runner import BotKiller, DemoOptions, run_demo
from trunkline.demo.scenario import (
    BUDGET_ISSUE,
    ISSUES,
    OUTSIDER,
    OWNER,
    PARALLEL_ISSUE,
    REFUSED_ISSUE,
    REWORK_ISSUE,
    RISKY_ISSUE,
    SERIALIZED_ISSUES,
)

KILL_SEED = 20261121


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment mention `text` (the demo's data
    directory: the forge has it in its arguments, the bot in TRUNKLINE_DATA_DIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        line = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        if text in line or text.encode() in environ:
            found.append(f"{entry.name}: {line[:200]}")
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted `trunkline demo --json` run; its stdout parsed, and what is left."""
    require_bwrap()
    data = tmp_path_factory.mktemp("demo") / "data"
    done = subprocess.run(
        [sys.executable, "-m", "trunkline", "demo", "--json", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout[-2000:]  # exactly one JSON object, nothing else
    result: dict[str, Any] = json.loads(lines[0])
    result["_left_behind"] = _processes_mentioning(str(data))
    return result


def _items(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(item["issue"]): item for item in result["items"]}


def _holders_overlap(result: dict[str, Any], a: int, b: int) -> bool:
    pair = sorted([f"issue-{a}", f"issue-{b}"])
    return pair in [sorted(p) for p in result["lock_overlaps"]]


def test_demo_json_has_every_field(demo_run: dict[str, Any]) -> None:
    for key in ("items", "main", "max_holders", "wall_seconds"):
        assert key in demo_run
    assert {"linear", "untested_commits"} <= set(demo_run["main"])
    for item in demo_run["items"]:
        assert {"issue", "state", "pr", "risk", "subsystems", "merged_sha", "approved_by",
                "review_rounds", "spend_usd", "spend_tokens"} <= set(item)  # fmt: skip
    assert sorted(_items(demo_run)) == [issue.number for issue in ISSUES]


def test_demo_merges_land_on_a_linear_tested_main(demo_run: dict[str, Any]) -> None:
    items = _items(demo_run)
    merged = [item for item in items.values() if item["state"] == "merged"]
    expected = {n for n in items if n not in (BUDGET_ISSUE, REFUSED_ISSUE)}
    assert {item["issue"] for item in merged} == expected, items
    assert demo_run["main"]["linear"] is True, demo_run["main"]
    assert demo_run["main"]["untested_commits"] == 0, demo_run["main"]
    # one integration commit per merged item, each on main's first-parent chain
    assert demo_run["main"]["commits"] == len(merged)
    for item in merged:
        assert item["merged_sha"], item
        assert item["pr"] is not None
        assert item["issue_closed"] is True, item


def test_demo_same_subsystem_items_never_hold_the_lock_together(demo_run: dict[str, Any]) -> None:
    items = _items(demo_run)
    first, second = SERIALIZED_ISSUES
    assert items[first]["subsystems"] == items[second]["subsystems"] == ["calc"]
    assert demo_run["max_holders"]["calc"] == 1
    assert not _holders_overlap(demo_run, first, second)
    # meanwhile the item elsewhere ran in parallel with a holder of the calc lock
    assert items[PARALLEL_ISSUE]["subsystems"] == ["text"]
    assert _holders_overlap(demo_run, first, PARALLEL_ISSUE) or _holders_overlap(
        demo_run, second, PARALLEL_ISSUE
    ), demo_run["lock_overlaps"]
    assert all(count == 1 for count in demo_run["max_holders"].values())


def test_demo_risky_change_counts_only_the_maintainers_approval(demo_run: dict[str, Any]) -> None:
    risky = _items(demo_run)[RISKY_ISSUE]
    assert risky["risk"] == "high"
    assert risky["subsystems"] == ["ci"]
    assert risky["state"] == "merged"
    assert risky["approved_by"] == [OWNER]
    assert any(reason.startswith(OUTSIDER) for reason in risky["approvals_not_counted"]), risky


def test_demo_first_review_requests_changes_then_merges(demo_run: dict[str, Any]) -> None:
    rework = _items(demo_run)[REWORK_ISSUE]
    assert rework["review_rounds"] == 1
    assert rework["state"] == "merged"
    others = [item for item in demo_run["items"] if item["issue"] != REWORK_ISSUE]
    assert all(item["review_rounds"] == 0 for item in others)


def test_demo_budget_item_escalates_and_outsider_label_is_refused(
    demo_run: dict[str, Any],
) -> None:
    items = _items(demo_run)
    budget = items[BUDGET_ISSUE]
    assert budget["state"] == "escalated"
    assert "budget" in (budget["exit_reason"] or "")
    assert budget["merged_sha"] is None
    assert budget["spend_tokens"] > max(
        item["spend_tokens"] for item in demo_run["items"] if item["issue"] != BUDGET_ISSUE
    )
    refused = items[REFUSED_ISSUE]
    assert refused["state"] == "refused"
    assert refused["pr"] is None
    assert refused["spend_tokens"] == 0


def test_demo_leaves_no_process_behind(demo_run: dict[str, Any]) -> None:
    assert demo_run["_left_behind"] == []


def test_demo_stopped_by_sigterm_leaves_no_process_behind(tmp_path: Path) -> None:
    require_bwrap()
    data = tmp_path / "data"
    demo = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "demo", "--json", "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # wait until the bot runs (it has the data directory in its environment)
        while not any(" serve " in line for line in _processes_mentioning(str(data))):
            assert demo.poll() is None, "the demo ended before its bot started"
            assert time.monotonic() < deadline, "the bot never started"
            time.sleep(0.2)
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert _processes_mentioning(str(data)) == []


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on crashes: per item, and the facts about main and the locks."""
    return {
        "items": {
            item["issue"]: (
                item["state"],
                item["risk"],
                tuple(item["subsystems"]),
                tuple(item["approved_by"]),
                item["review_rounds"],
                item["merged_sha"] is not None,
                item["pr"] is not None,
                item["issue_closed"],
            )
            for item in result["items"]
        },
        "linear": result["main"]["linear"],
        "untested": result["main"]["untested_commits"],
        "main_commits": result["main"]["commits"],
        "max_holders": result["max_holders"],
    }


def test_demo_bot_killed_five_times_ends_the_same(demo_run: dict[str, Any], tmp_path: Path) -> None:
    killer = BotKiller(kills=5, seed=KILL_SEED)
    result = run_demo(DemoOptions(data_dir=tmp_path / "data"), hook=killer).to_json()

    assert result["bot_kills"] == 5
    assert result["bot_starts"] == 6
    assert _outcome(result) == _outcome(demo_run)
    assert _processes_mentioning(str(tmp_path / "data")) == []
