"""`trunkline policy check|explain|schema` and `trunkline bench policy`.

The I/O edge of the policy engine: reads the files named on the command line, calls the
pure loader and evaluator, prints results. Exit codes: 0 success, 1 an invalid policy,
2 a file that cannot be read (or bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trunkline.policies.evaluation import Evaluation
    from trunkline.policies.loader import PolicyError
    from trunkline.policies.model import Policy


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    bench: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    policy = commands.add_parser("policy", help="check and explain a repository policy file")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    policy.set_defaults(handler=_usage(policy))

    check = policy_commands.add_parser("check", help="validate a policy file")
    check.add_argument("file", metavar="FILE", help="the policy file (.github/trunkline.yml)")
    check.set_defaults(handler=_check)

    explain = policy_commands.add_parser(
        "explain", help="show subsystems, owners, risk and approvals of a change"
    )
    explain.add_argument("file", metavar="FILE", help="the policy file")
    explain.add_argument(
        "--path", action="append", default=[], metavar="P", help="a modified path (repeatable)"
    )
    explain.add_argument("--added", action="append", default=[], metavar="P", help="added path")
    explain.add_argument(
        "--deleted", action="append", default=[], metavar="P", help="a deleted path"
    )
    explain.add_argument(
        "--renamed", action="append", default=[], nargs=2, metavar=("OLD", "NEW"), help="a rename"
    )
    explain.add_argument(
        "--lines", type=int, default=0, metavar="N", help="lines changed (added + removed)"
    )
    explain.add_argument(
        "--new-dependencies", action="store_true", help="the change adds dependencies"
    )
    explain.add_argument(
        "--dependency-file",
        action="append",
        default=[],
        metavar="P",
        help="a dependency manifest the change touches",
    )
    explain.add_argument("--codeowners", metavar="F", help="a CODEOWNERS file for fallback")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.set_defaults(handler=_explain)

    schema = policy_commands.add_parser("schema", help="print the policy file's JSON Schema")
    schema.set_defaults(handler=_schema)

    policy_bench = bench.add_parser(
        "policy", help="policy evaluations per second, indexed versus naive"
    )
    policy_bench.add_argument("--json", action="store_true", help="print one JSON object")
    policy_bench.add_argument(
        "--seconds", type=float, default=2.0, help="minimum timing per evaluator"
    )
    policy_bench.set_defaults(handler=_bench)


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        print(f"trunkline: cannot read {path}: {reason}", file=sys.stderr)
        return None


def _load(path: str) -> Policy | list[PolicyError] | None:
    from trunkline.policies.loader import load_policy_bytes

    data = _read(path)
    if data is None:
        return None
    return load_policy_bytes(data, path)


def _check(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    if loaded is None:
        return 2
    if isinstance(loaded, list):
        for error in loaded:
            print(error)
        return 1
    print("ok")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from trunkline.policies.codeowners import parse_codeowners
    from trunkline.policies.evaluation import Change, CompiledPolicy

    loaded = _load(args.file)
    if loaded is None:
        return 2
    if isinstance(loaded, list):
        for error in loaded:
            print(error)
        return 1
    codeowners = None
    if args.codeowners:
        data = _read(args.codeowners)
        if data is None:
            return 2
        codeowners = parse_codeowners(data.decode("utf-8", errors="replace"))
    change = Change(
        added=tuple(args.added),
        modified=tuple(args.path),
        deleted=tuple(args.deleted),
        renamed=tuple((old, new) for old, new in args.renamed),
        lines_changed=args.lines,
        dependency_files=tuple(args.dependency_file),
        new_dependencies=args.new_dependencies,
    )
    evaluation = CompiledPolicy(loaded).evaluate(change, codeowners)
    if args.json:
        print(json.dumps(explain_json(evaluation), indent=2))
    else:
        print(explain_text(evaluation))
    return 0


def explain_json(evaluation: Evaluation) -> dict[str, Any]:
    """The `--json` object: the five documented keys plus per-path and per-subsystem detail."""
    approvals = evaluation.approvals
    return {
        "subsystems": list(evaluation.subsystem_names),
        "owners": list(evaluation.owners),
        "risk": evaluation.risk,
        "reasons": [reason.message for reason in evaluation.reasons],
        "approvals": {
            "level": approvals.level,
            "required": approvals.required,
            "from": "owners" if approvals.from_owners else list(approvals.approvers),
            "approvers": list(approvals.approvers),
            "plan_approval": approvals.plan_approval,
            "allow_requester": approvals.allow_requester,
        },
        "paths": {route.path: list(route.subsystems) for route in evaluation.paths},
        "owners_by_subsystem": {
            touch.name: {"owners": list(touch.owners), "source": str(touch.owners_source)}
            for touch in evaluation.subsystems
        },
    }


def explain_text(evaluation: Evaluation) -> str:
    lines = ["Subsystems:"]
    for touch in evaluation.subsystems:
        owners = ", ".join(touch.owners) or "(none)"
        default = " (default subsystem)" if touch.is_default else ""
        lines.append(f"  {touch.name}{default}: owners {owners} [from {touch.owners_source}]")
        lines.extend(f"    {path}" for path in touch.paths)
    if not evaluation.subsystems:
        lines.append("  (no paths given)")
    lines.append(f"Owners: {', '.join(evaluation.owners) or '(none)'}")
    lines.append(f"Risk: {evaluation.risk}")
    if evaluation.reasons:
        lines.append("Reasons:")
        lines.extend(f"  - {reason.message}" for reason in evaluation.reasons)
    else:
        lines.append("Reasons: no risk rule matched (lowest level)")
    approvals = evaluation.approvals
    if approvals.required == 0:
        lines.append("Approvals: none required")
    else:
        source = "owners" if approvals.from_owners else "named approvers"
        who = ", ".join(approvals.approvers) or "(nobody: escalate)"
        lines.append(f"Approvals: {approvals.required} from {source}: {who}")
        if approvals.plan_approval:
            lines.append("  the plan must be approved too")
        if approvals.allow_requester:
            lines.append("  the requester may approve")
    return "\n".join(lines)


def _schema(_: argparse.Namespace) -> int:
    from trunkline.policies.model import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trunkline.policies.bench import PATHS, SUBSYSTEMS, run_benchmark

    result = run_benchmark(min_seconds=args.seconds)
    figures = {
        "evals_per_s": round(result.evals_per_s, 1),
        "naive_evals_per_s": round(result.naive_evals_per_s, 2),
        "speedup": round(result.speedup, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"policy evaluation: {PATHS} paths against {SUBSYSTEMS} subsystems")
    print(f"  indexed: {figures['evals_per_s']} evals/s")
    print(f"  naive:   {figures['naive_evals_per_s']} evals/s")
    print(f"  speedup: {figures['speedup']}x")
    return 0
