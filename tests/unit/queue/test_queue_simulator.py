"""The merge-queue simulator: deterministic per seed, never merges a bad PR, loses no PR, and
drives the real engine for every strategy (serial, speculative, batched, pretested)."""

from __future__ import annotations

import argparse
import json

import pytest

from trunkline.queue.commands import format_report, json_report, register
from trunkline.queue.simulator import (
    SimulationParams,
    StrategyConfig,
    run_benchmark,
    search_grid,
    simulate,
    strategy_config,
)

SHORT = SimulationParams(arrival_per_hour=12, hours=4, seed=3)

STRATEGIES = {
    "serial": strategy_config(),
    "speculative": strategy_config(parallel_checks=3),
    "batched": strategy_config(batch_size=4, parallel_checks=3, flake_retries=1),
    "waiting": strategy_config(batch_size=3, parallel_checks=2, batch_wait_minutes=10),
    "pretest": strategy_config(batch_size=4, parallel_checks=3, pretest=True),
    "probes": strategy_config(batch_size=3, parallel_checks=2, parallel_bisection=True),
    "probes aside": strategy_config(
        batch_size=3, parallel_checks=3, parallel_bisection=True, bisection_holds_stack=False
    ),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_queue_simulator_is_deterministic_per_seed(name: str) -> None:
    config = STRATEGIES[name]
    assert simulate(SHORT, config) == simulate(SHORT, config)


def test_queue_simulator_seeds_differ() -> None:
    config = STRATEGIES["batched"]
    other = SimulationParams(arrival_per_hour=12, hours=4, seed=4)
    assert simulate(SHORT, config).minutes_to_merge != simulate(other, config).minutes_to_merge


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("arrival", [12.0, None])
def test_queue_simulator_merges_no_bad_pr_and_loses_none(name: str, arrival: float | None) -> None:
    params = SimulationParams(arrival_per_hour=arrival, hours=6, bad_rate=0.2, flake_rate=0.05)
    result = simulate(params, STRATEGIES[name])
    assert result.bad_merged == 0
    assert result.arrivals == result.merged + result.ejected + result.still_queued
    assert result.merged > 0
    assert result.ejected > 0  # with a fifth of the PRs bad, some are ejected
    assert result.good_ejected <= result.ejected
    assert result.ci_runs > 0
    assert all(minutes > 0 for minutes in result.minutes_to_merge)
    assert result.merged_after_drain >= result.merged
    assert result.good_ejected_after_drain >= result.good_ejected


def test_queue_simulator_drain_empties_a_lightly_loaded_queue() -> None:
    params = SimulationParams(arrival_per_hour=4, hours=6, bad_rate=0.2, flake_rate=0.05)
    for config in STRATEGIES.values():
        result = simulate(params, config)
        assert result.queued_after_drain == 0
        assert result.merged_after_drain + result.good_ejected_after_drain <= result.arrivals


def test_queue_simulator_with_no_bad_prs_and_no_flakes_ejects_nothing() -> None:
    params = SimulationParams(arrival_per_hour=6, hours=6, bad_rate=0.0, flake_rate=0.0)
    for config in STRATEGIES.values():
        result = simulate(params, config)
        assert (result.ejected, result.bad_merged) == (0, 0)


def test_queue_simulator_serial_runs_one_pr_per_ci_run() -> None:
    params = SimulationParams(arrival_per_hour=None, hours=5, bad_rate=0.0, flake_rate=0.0)
    result = simulate(params, STRATEGIES["serial"])
    # one run at a time, each about 30 minutes: about 10 in 5 hours, one merged PR each
    assert 8 <= result.merged <= 11
    assert result.ci_runs == result.merged + 1  # the last run is still going at the end


def test_queue_simulator_rejects_impossible_parameters() -> None:
    with pytest.raises(ValueError, match="arrival rate"):
        SimulationParams(arrival_per_hour=0)
    with pytest.raises(ValueError, match="bad_rate"):
        SimulationParams(bad_rate=1.5)


def test_queue_benchmark_reports_every_strategy_in_one_object() -> None:
    params = SimulationParams(arrival_per_hour=12, hours=2, ci_concurrency=3)
    report = run_benchmark(params, seeds=1)
    assert set(report["strategies"]) == {"serial", "speculative", "trunkline"}
    keys = {
        "arrivals",
        "good_arrivals",
        "merged",
        "merged_per_hour",
        "mean_minutes_to_merge",
        "p95_minutes_to_merge",
        "ci_runs_per_merge",
        "bad_merged",
        "good_ejected",
    }
    for summary in report["strategies"].values():
        assert keys <= set(summary)
        assert summary["bad_merged"] == 0
    config = report["strategies"]["trunkline"]["config"]
    assert StrategyConfig(**config) in search_grid(3)
    assert report["upper_bound_per_hour"] == 3 * 60 / 30
    assert report["params"]["seeds"] == 1
    json.dumps(report)  # plain data
    assert "trunkline config:" in format_report(report)
    grid = report["strategies"]["trunkline"]["grid"]
    assert [StrategyConfig(**point["config"]) for point in grid] == list(search_grid(3))
    chosen = next(point for point in grid if point["config"] == config)
    trunkline = report["strategies"]["trunkline"]
    for figure in ("merged_per_hour", "mean_minutes_to_merge", "ci_runs_per_merge"):
        assert chosen[figure] == trunkline[figure]  # each grid point prints its own figures
    grid_lines = [line for line in format_report(report).splitlines() if "  grid " in line]
    assert len(grid_lines) == len(grid)
    assert all(" min " in line and "runs/merge" in line for line in grid_lines)
    shaped = json_report(report)
    assert set(shaped) == {"strategies", "upper_bound_per_hour", "wall_seconds", "params"}
    drained = {
        "good_merged_share",
        "good_merged_share_after_drain",
        "mean_minutes_to_merge_after_drain",
        "p95_minutes_to_merge_after_drain",
    }
    assert set(shaped["strategies"]["serial"]) == keys | drained
    assert set(shaped["strategies"]["trunkline"]) == keys | drained | {"config"}
    for summary in shaped["strategies"].values():
        assert summary["good_merged_share"] <= summary["good_merged_share_after_drain"]
        assert summary["mean_minutes_to_merge"] <= summary["p95_minutes_to_merge"] or (
            summary["merged"] == 0
        )


def test_queue_bench_command_is_registered_with_its_options() -> None:
    commands = argparse.ArgumentParser().add_subparsers()
    bench = argparse.ArgumentParser().add_subparsers()
    register(commands, bench)
    args = bench.choices["queue"].parse_args(
        ["--json", "--arrival", "saturated", "--ci-minutes", "20", "--seeds", "2"]
    )
    assert (args.json, args.arrival, args.ci_minutes, args.seeds) == (True, "saturated", 20.0, 2)
