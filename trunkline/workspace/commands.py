"""`trunkline workspace recover` and `trunkline bench workspace`.

Performs I/O (the data directory's mirrors, or a temporary benchmark repository). Exit
codes: 0 success, 1 a failure (printed on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    bench: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    workspace = commands.add_parser("workspace", help="git mirrors and worktrees")
    actions = workspace.add_subparsers(dest="workspace_command", metavar="ACTION")
    recover = actions.add_parser(
        "recover", help="clean what a crashed process left in every mirror (run before start)"
    )
    recover.add_argument(
        "--keep-worktrees",
        action="store_true",
        help="keep healthy worktrees of all items (default: remove them all)",
    )
    recover.set_defaults(handler=_recover)
    workspace.set_defaults(handler=_usage(workspace))

    measure = bench.add_parser("workspace", help="integration commits, diffs, worktrees")
    measure.add_argument("--files", type=int, default=500, help="files in the repository")
    measure.add_argument("--branches", type=int, default=20, help="PR branches to integrate")
    measure.add_argument("--json", action="store_true", help="print one JSON object")
    measure.set_defaults(handler=_bench)


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _recover(args: argparse.Namespace) -> int:
    from trunkline.errors import TrunklineError
    from trunkline.settings import load_settings
    from trunkline.workspace.model import Identity
    from trunkline.workspace.workspace import Workspace

    settings = load_settings()
    workspace = Workspace(
        settings.data_dir, Identity(settings.git_author_name, settings.git_author_email)
    )
    try:
        reports = workspace.recover_all(None if args.keep_worktrees else {})
    except TrunklineError as error:
        print(f"recovery failed: {error}", file=sys.stderr)
        return 1
    for report in reports:
        print(
            f"{report.mirror}: {len(report.removed_lock_files)} lock files, "
            f"{len(report.removed_worktrees)} worktrees, "
            f"{len(report.removed_directories)} directories, "
            f"{len(report.deleted_branches)} branches removed"
        )
    if not reports:
        print("no mirrors")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trunkline.workspace.bench import run_benchmark

    results = run_benchmark(files=args.files, branches=args.branches)
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return 0
    for name, value in results.items():
        print(f"{name:32} {value:10.1f}")
    return 0
