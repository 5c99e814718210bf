"""`trunkline bench queue`: the merge-queue throughput benchmark (a simulation, see
`trunkline.queue.simulator`).

I/O at the edge only: parses arguments, runs the pure simulations, prints a table or JSON.
Every strategy runs on the same seeds (the same PRs arrive, the same ones are bad), so the
figures compare strategies, not luck.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from trunkline.queue.simulator import SimulationParams


def register(
    commands: argparse._SubParsersAction[Any], bench: argparse._SubParsersAction[Any]
) -> None:
    parser = bench.add_parser(
        "queue",
        help="simulate the merge queue (serial, speculative, trunkline) on a virtual clock",
        description=(
            "Discrete-event simulation driving the real queue engine: PRs arrive, some are bad, "
            "CI runs flake, at most C runs at a time. Reports each strategy in the same run."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--arrival",
        default="12",
        help="PRs per hour (Poisson), or 'saturated' for an unbounded backlog (default 12)",
    )
    parser.add_argument("--ci-minutes", type=float, default=30.0, help="CI run length (30)")
    parser.add_argument("--ci-concurrency", type=int, default=5, help="CI runners (5)")
    parser.add_argument("--bad-rate", type=float, default=0.10, help="share of bad PRs (0.10)")
    parser.add_argument("--flake-rate", type=float, default=0.02, help="CI flake rate (0.02)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (24)")
    parser.add_argument("--seed", type=int, default=1, help="first seed (1)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds to average over (5)")
    parser.set_defaults(handler=_bench_queue)


def _bench_queue(args: argparse.Namespace) -> int:
    from trunkline.queue.simulator import run_benchmark

    try:
        arrival = None if args.arrival == "saturated" else float(args.arrival)
        if args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        report = run_benchmark(
            SimulationParams(
                arrival_per_hour=arrival,
                ci_minutes=args.ci_minutes,
                ci_concurrency=args.ci_concurrency,
                bad_rate=args.bad_rate,
                flake_rate=args.flake_rate,
                hours=args.hours,
                seed=args.seed,
            ),
            seeds=args.seeds,
        )
    except ValueError as error:
        print(f"trunkline bench queue: {error}")
        return 2
    print(json.dumps(json_report(report), indent=2) if args.json else format_report(report))
    return 0


STRATEGY_KEYS = (
    "arrivals",
    "good_arrivals",
    "merged",
    "merged_per_hour",
    "mean_minutes_to_merge",
    "p95_minutes_to_merge",
    "ci_runs_per_merge",
    "bad_merged",
    "good_ejected",
)
DRAIN_KEYS = (
    "good_merged_share",
    "good_merged_share_after_drain",
    "mean_minutes_to_merge_after_drain",
    "p95_minutes_to_merge_after_drain",
)
"""Beyond issue 7's keys: the share of good arrivals merged in the window and once the queue
drained (no more arrivals), and the times to merge over every merge of the drained run."""


def json_report(report: dict[str, Any]) -> dict[str, Any]:
    """`--json`: exactly the shape issue 7 specifies (the table adds the shares merged within
    the window and after the drain)."""
    strategies = {}
    for name, summary in report["strategies"].items():
        shaped = {key: summary[key] for key in (*STRATEGY_KEYS, *DRAIN_KEYS)}
        if "config" in summary:
            shaped["config"] = summary["config"]
        strategies[name] = shaped
    return {
        "strategies": strategies,
        "upper_bound_per_hour": report["upper_bound_per_hour"],
        "wall_seconds": report["wall_seconds"],
        "params": report["params"],
    }


def format_report(report: dict[str, Any]) -> str:
    """A readable table of `run_benchmark`'s report."""
    params = report["params"]
    arrival = params["arrival_per_hour"] or "saturated"
    lines = [
        f"merge queue simulation: arrival {arrival}/h, CI {params['ci_minutes']} min x "
        f"{params['ci_concurrency']} runners, bad {params['bad_rate']}, flake "
        f"{params['flake_rate']}, {params['hours']} h, seeds {params['seeds']}",
        f"{'strategy':<12}{'merged':>8}{'/h':>7}{'mean min':>10}{'p95 min':>9}"
        f"{'runs/merge':>11}{'bad merged':>11}{'good ejected':>13}{'good merged %':>14}"
        f"{'after drain %':>14}{'drained mean':>13}",
    ]
    for name, s in report["strategies"].items():
        lines.append(
            f"{name:<12}{s['merged']:>8.1f}{s['merged_per_hour']:>7.2f}"
            f"{s['mean_minutes_to_merge']:>10.1f}{s['p95_minutes_to_merge']:>9.1f}"
            f"{s['ci_runs_per_merge']:>11.2f}{s['bad_merged']:>11.1f}{s['good_ejected']:>13.1f}"
            f"{100 * s['good_merged_share']:>14.1f}"
            f"{100 * s['good_merged_share_after_drain']:>14.1f}"
            f"{s['mean_minutes_to_merge_after_drain']:>13.1f}"
        )
    lines.append(f"trunkline config: {report['strategies']['trunkline']['config']}")
    for point in report["strategies"]["trunkline"].get("grid", ()):
        chosen = {k: v for k, v in point["config"].items() if v}
        lines.append(
            f"  grid {point['merged_per_hour']:6.2f}/h {point['mean_minutes_to_merge']:6.1f} min "
            f"{point['ci_runs_per_merge']:5.2f} runs/merge  {chosen}"
        )
    lines.append(
        f"upper bound for one PR per run: {report['upper_bound_per_hour']:.1f}/h; "
        f"wall {report['wall_seconds']:.1f} s (slowest simulation "
        f"{report['slowest_simulation_seconds']:.2f} s)"
    )
    return "\n".join(lines)
