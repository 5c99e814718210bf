"""`trunkline demo`: the whole product on one machine, with no network.

Performs I/O (the runner's processes, the terminal). Settings for the bot are built by the
runner for the processes it starts; this command reads only its flags and, for
`--provider anthropic`, the API key from `ANTHROPIC_API_KEY` or `TRUNKLINE_ANTHROPIC_API_KEY`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def register(commands: Any, bench: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the local forge, the bot and scripted agents on a seeded project",
        description=(
            "Start the local forge with a small Python project, its policy, a maintainer, an "
            "outside contributor and seven issues; start the bot (trunkline serve, SQLite) with "
            "scripted agents; watch the issues become reviewed, approved, merged changes."
        ),
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object at the end")
    demo.add_argument(
        "--data", type=Path, default=None, help="keep everything in this (new) directory"
    )
    demo.add_argument(
        "--provider",
        choices=("scripted", "anthropic"),
        default="scripted",
        help="the agents: scripted (default, offline) or the real Anthropic API",
    )
    demo.add_argument(
        "--sandbox",
        choices=("bubblewrap", "none"),
        default="bubblewrap",
        help="how the agents' commands are isolated; none only if you cannot install bubblewrap",
    )
    demo.add_argument("--workers", type=int, default=4, help="the bot's job worker threads")
    demo.add_argument("--timeout", type=float, default=300.0, help="give up after this long")
    demo.add_argument(
        "--kill-bot",
        type=int,
        default=0,
        metavar="N",
        help="SIGKILL the bot N times at random moments and restart it (shows recovery)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of --kill-bot's moments")
    demo.set_defaults(handler=_demo)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trunkline.demo.processes import DemoProcessError
    from trunkline.demo.runner import BotKiller, DemoOptions, run_demo
    from trunkline.demo.view import LiveView, print_result
    from trunkline.errors import ConfigurationError

    key = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("TRUNKLINE_ANTHROPIC_API_KEY")
    options = DemoOptions(
        data_dir=args.data,
        provider=args.provider,
        anthropic_api_key=key if args.provider == "anthropic" else None,
        sandbox=args.sandbox,
        workers=max(1, args.workers),
        timeout_seconds=args.timeout,
    )
    hook = BotKiller(kills=args.kill_bot, seed=args.seed) if args.kill_bot > 0 else None
    console = Console(stderr=args.json)
    # `kill` and a closed terminal end the demo like Ctrl-C: its cleanup stops every process
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if args.json:
            result = run_demo(options, hook=hook)
        else:
            with LiveView(console) as view:
                result = run_demo(options, observer=view, hook=hook)
    except (ConfigurationError, DemoProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print_result(console, result)
    return 0 if not result.problems and result.main.linear else 1
