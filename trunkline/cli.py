"""The `trunkline` command line: a thin root that each area plugs its commands into.

Each area owns a `commands` module exposing `register(commands, bench)`: it adds its
sub-commands to `commands` (the top-level sub-parsers) and its benchmarks to `bench`
(the sub-parsers of `trunkline bench`). A handler is stored as the `handler` default and
returns the process exit code. Heavy imports happen inside handlers, so `trunkline --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from trunkline import __version__

Handler = Callable[[argparse.Namespace], int]

# Areas that contribute commands, in the order their help appears.
COMMAND_MODULES: tuple[str, ...] = (
    "trunkline.policies.commands",
    "trunkline.store.commands",
    "trunkline.bot.commands",
    "trunkline.forge.commands",
    "trunkline.workspace.commands",
    "trunkline.agents.commands",
    "trunkline.locks.commands",
    "trunkline.web.commands",
    "trunkline.queue.commands",
    "trunkline.pipeline.cli_commands",
    "trunkline.demo.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trunkline",
        description="Merge discipline for repositories where many AI coding agents work.",
    )
    parser.add_argument("--version", action="version", version=f"trunkline {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench_parser = commands.add_parser(
        "bench", help="measure performance (prints figures; --json for one object)"
    )
    bench = bench_parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    bench_parser.set_defaults(handler=_usage(bench_parser))
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(commands, bench)
    parser.set_defaults(handler=_usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
