"""`trunkline bench agents`: figures for the agent runtime's overheads.

The I/O edge of the agents area on the command line: creates a temporary directory, runs
commands under bubblewrap, prints figures (or one JSON object with --json). Measures the
sandbox's start-up cost per command, the tool-use loop's overhead per turn with the
scripted provider, and the sanitiser's throughput.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    bench: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = bench.add_parser("agents", help="sandbox start-up, loop overhead, sanitiser speed")
    parser.add_argument("--commands", type=int, default=20, help="sandboxed commands to run")
    parser.add_argument("--turns", type=int, default=50, help="scripted loop turns")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_bench)


def _bench_sandbox(directory: Path, count: int) -> dict[str, float] | None:
    from trunkline.agents.sandbox import BubblewrapSandbox

    if shutil.which("bwrap") is None:
        return None
    sandbox = BubblewrapSandbox(directory, time_limit=60)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = sandbox.run(["true"])
        samples.append((time.perf_counter() - started) * 1000)
        if result.exit_code != 0:
            raise RuntimeError(f"bwrap failed: {result.output}")
    samples.sort()
    return {
        "sandbox_command_median_ms": statistics.median(samples),
        "sandbox_command_p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)],
    }


def _bench_loop(directory: Path, turns: int) -> dict[str, float]:
    from trunkline.agents.agent_loop import RunContext, run_role
    from trunkline.agents.budget import BudgetLimits, ModelPrice
    from trunkline.agents.redaction import Redactor
    from trunkline.agents.roles import READ_ONLY_TOOLS, WorkItem, planner_message, planner_spec
    from trunkline.agents.scripted_provider import ScriptedProvider
    from trunkline.agents.timeline import InMemoryTimeline
    from trunkline.agents.tools import Toolbox
    from trunkline.clock import SystemClock

    (directory / "a.py").write_text("x = 1\n" * 200)
    plan = {
        "summary": "s",
        "steps": ["a"],
        "paths": ["a.py"],
        "acceptance_criteria": ["c"],
    }
    script = [
        {"content": [{"type": "tool_use", "name": "read_file", "input": {"path": "a.py"}}]}
        for _ in range(turns)
    ]
    script.append({"content": [{"type": "tool_use", "name": "submit_plan", "input": plan}]})
    ctx = RunContext(
        work_item="bench/agents#1",
        model="bench",
        provider=ScriptedProvider.of(script),
        prices={"bench": ModelPrice(input=Decimal(3), output=Decimal(15))},
        limits=BudgetLimits(10**12, Decimal(10**6), 10**6, 10**6, 10),
        clock=SystemClock(),
        timeline=InMemoryTimeline(),
        redactor=Redactor.of(["bench-secret"]),
    )
    item = WorkItem("bench/agents#1", "t", "b")
    started = time.perf_counter()
    result = run_role(
        ctx, planner_spec(1000), Toolbox(directory, READ_ONLY_TOOLS), planner_message(item)
    )
    elapsed = time.perf_counter() - started
    if result.product is None:
        raise RuntimeError(f"the benchmark run failed: {result.detail}")
    return {"loop_turns": turns + 1, "loop_ms_per_turn": elapsed * 1000 / (turns + 1)}


def _bench_sanitize() -> dict[str, float]:
    from trunkline.agents.untrusted import sanitize

    chunk = "Fix add() <!-- hidden --> zero\u200bwidth \u202ebidi\u202c ✓ " * 20
    text = chunk * (1_000_000 // len(chunk))
    started = time.perf_counter()
    sanitize(text)
    elapsed = time.perf_counter() - started
    return {"sanitize_mb_per_s": len(text.encode("utf-8")) / 1e6 / elapsed}


def _bench(args: argparse.Namespace) -> int:
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="trunkline-bench-agents-") as name:
        directory = Path(name)
        sandbox = _bench_sandbox(directory, args.commands)
        if sandbox is None:
            figures["sandbox"] = "bwrap not installed"
        else:
            figures.update(sandbox)
        figures.update(_bench_loop(directory, args.turns))
    figures.update(_bench_sanitize())
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            print(f"{key:28} {shown}")
    return 0
