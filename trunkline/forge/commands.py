"""`trunkline forge ...` and `trunkline bench forge`: the forge's command line.

Performs I/O only inside handlers (imports there too, so `trunkline --help` stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: Any, bench: Any) -> None:
    forge = commands.add_parser(
        "forge", help="run the local GitHub-compatible forge (or seed it: forge seed SPEC)"
    )
    _serve_options(forge)
    forge.set_defaults(handler=_serve)
    sub = forge.add_subparsers(dest="forge_command", metavar="SUBCOMMAND")
    seed = sub.add_parser("seed", help="create users, the App, repositories from a YAML spec")
    seed.add_argument("spec", type=Path, help="seed spec (YAML), see docs/forge.md")
    seed.add_argument("--data", type=Path, default=Path(".trunkline/forge"), help="data dir")
    seed.add_argument(
        "--public-url", default="http://127.0.0.1:8765", help="URL webhooks payloads use"
    )
    seed.set_defaults(handler=_seed)
    bench_forge = bench.add_parser("forge", help="requests/s of a mixed PyGithub workload")
    bench_forge.add_argument("--json", action="store_true", help="print one JSON object")
    bench_forge.add_argument("--operations", type=int, default=300, help="API calls to make")
    bench_forge.set_defaults(handler=_bench)


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", type=Path, default=Path(".trunkline/forge"), help="data dir")
    parser.add_argument("--seed", type=Path, default=None, help="seed spec applied at start")
    parser.add_argument("--public-url", default=None, help="URL the forge is reached at")
    parser.add_argument(
        "--allow-public",
        action="store_true",
        help="listen on a non-loopback address (its /_forge admin endpoints, which set the "
        "CI command it runs, have no authentication: only on a network you trust)",
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from trunkline.forge.runtime import Forge
    from trunkline.forge.seed import apply_seed, load_spec
    from trunkline.forge.server import create_app
    from trunkline.forge.state import ForgeState

    if (
        args.host not in LOOPBACK_HOSTS
        and not args.host.startswith("127.")
        and not args.allow_public
    ):
        print(
            f"error: the forge is a local test double; refusing to listen on {args.host} "
            "(its /_forge admin endpoints are unauthenticated). Use --allow-public to insist.",
            file=sys.stderr,
        )
        return 2
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    # Git pushes into the data directory from other working directories: use absolute paths.
    forge = Forge(ForgeState.open(args.data.resolve()), public_url)
    forge.start()
    try:
        if args.seed is not None:
            apply_seed(forge, load_spec(args.seed), args.seed.resolve().parent)
        uvicorn.run(create_app(forge), host=args.host, port=args.port, log_level="warning")
    finally:
        forge.stop()
    return 0


def _seed(args: argparse.Namespace) -> int:
    from trunkline.forge.runtime import Forge
    from trunkline.forge.seed import apply_seed, load_spec
    from trunkline.forge.state import ForgeState

    forge = Forge(ForgeState.open(args.data.resolve()), args.public_url)
    result = apply_seed(forge, load_spec(args.spec), args.spec.resolve().parent)
    forge.state.save()
    print(result.to_json())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trunkline.forge.bench import run_benchmark

    figures = run_benchmark(args.operations)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0
