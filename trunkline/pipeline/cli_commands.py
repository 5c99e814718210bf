"""CLI commands of the dispatch pipeline: `trunkline bench dispatch`.

Performs I/O (stdout; the benchmark runs a forge, a Messages API and a `trunkline serve`
process in a temporary directory). Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(commands: Any, bench: Any) -> None:
    dispatch = bench.add_parser(
        "dispatch", help="label-to-executor-start latency of a served bot (scripted agents)"
    )
    dispatch.add_argument("--json", action="store_true", help="print one JSON object")
    dispatch.add_argument("--items", type=int, default=10, help="measured issues (1-90)")
    dispatch.add_argument("--workers", type=int, default=2, help="job worker threads")
    dispatch.set_defaults(handler=_bench_dispatch)


def _bench_dispatch(args: argparse.Namespace) -> int:
    from trunkline.pipeline.bench import format_report, run_dispatch_bench

    results = run_dispatch_bench(items=args.items, workers=args.workers)
    print(json.dumps(results) if args.json else format_report(results))
    return 0
