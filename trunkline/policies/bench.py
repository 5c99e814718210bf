"""`trunkline bench policy`: evaluations per second, indexed versus naive matching.

Impure: reads the thread's CPU clock to time runs. The workload is generated
deterministically (fixed seed): a policy of 200 subsystems (4 to 7 patterns each, of
several shapes, 900 in all, plus risk rules) and a change of 1,000 paths spread over them,
some matching nothing. Before timing, it checks that the indexed and the naive evaluator
return identical evaluations.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from trunkline.policies.evaluation import Change, CompiledPolicy
from trunkline.policies.model import Policy

SUBSYSTEMS = 200
PATHS = 1000


def generate_policy(subsystems: int = SUBSYSTEMS) -> Policy:
    """A monorepo-like policy: per subsystem its service tree, library, tests and config
    file, for some also docs, a shared directory at any depth, or an excluded subtree."""
    entries: dict[str, object] = {}
    for index in range(subsystems):
        name = f"sub{index:03d}"
        paths = [f"services/{name}/**", f"libs/{name}/", f"tests/{name}/", f"config/{name}.yaml"]
        if index % 3 == 0:
            paths.append(f"docs/{name}/*.md")
        if index % 10 == 0:
            paths.append(f"**/{name}-shared/**")
        if index % 25 == 0:
            paths.append(f"!services/{name}/generated/**")
        entries[name] = {"paths": paths, "owners": [f"owner{index % 17}"], "max_active": 1}
    entries["docs"] = {"paths": ["*.md", "docs/"], "owners": ["@acme/docs"]}
    entries["build"] = {"paths": ["Makefile", "*.toml", "/tools/**"]}
    return Policy.model_validate(
        {
            "version": 1,
            "subsystems": entries,
            "risk": {
                "high": {
                    "paths": [".github/workflows/**", "**/migrations/**"],
                    "deleted_files": True,
                },
                "medium": {"paths": ["*.toml", "services/*/api/**"], "changed_lines_over": 500},
            },
            "approvals": {"high": {"required": 2}, "medium": {"required": 1}},
        }
    )


def generate_change(paths: int = PATHS, subsystems: int = SUBSYSTEMS, seed: int = 7) -> Change:
    """A large change touching many subsystems; about one path in twenty matches none."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible workload, not a secret)
    chosen: set[str] = set()
    while len(chosen) < paths:
        name = f"sub{rng.randrange(subsystems):03d}"
        shape = rng.randrange(20)
        leaf = f"mod{rng.randrange(10_000)}.py"
        if shape < 10:
            chosen.add(f"services/{name}/src/pkg{rng.randrange(5)}/{leaf}")
        elif shape < 12:
            chosen.add(f"libs/{name}/{leaf}")
        elif shape == 12:
            chosen.add(f"tests/{name}/test_{leaf}")
        elif shape == 13:
            chosen.add(f"config/{name}.yaml")
        elif shape == 14:
            chosen.add(f"docs/{name}/guide{rng.randrange(100)}.md")
        elif shape == 15:
            chosen.add(f"services/{name}/migrations/{rng.randrange(1000):04d}_step.py")
        elif shape == 16:
            chosen.add(f"services/{name}/api/{leaf}")
        elif shape == 17:
            chosen.add(f"vendor/{name}-shared/{leaf}")
        else:
            chosen.add(f"misc/area{rng.randrange(50)}/{leaf}")
    ordered = sorted(chosen)
    return Change(
        modified=tuple(ordered[: paths - 20]),
        deleted=tuple(ordered[paths - 20 :]),
        lines_changed=4200,
    )


@dataclass(frozen=True)
class BenchResult:
    evals_per_s: float
    naive_evals_per_s: float

    @property
    def speedup(self) -> float:
        return self.evals_per_s / self.naive_evals_per_s if self.naive_evals_per_s else 0.0


def run_benchmark(min_seconds: float = 2.0) -> BenchResult:
    """Time both evaluators on the generated workload, after checking they agree.

    The two are timed in alternating rounds (ten indexed evaluations, then one naive one),
    so a change in machine load during the run affects both figures alike. Time is the
    thread's CPU time: the figures are evaluations per second of one busy core.
    """
    policy = generate_policy()
    change = generate_change()
    indexed = CompiledPolicy(policy, indexed=True)
    naive = CompiledPolicy(policy, indexed=False)
    if indexed.evaluate(change) != naive.evaluate(change):
        raise AssertionError("indexed and naive evaluation disagree on the benchmark change")
    fast_runs = slow_runs = 0
    fast_time = slow_time = 0.0
    rounds = 0
    while rounds < 3 or fast_time + slow_time < min_seconds:
        start = time.thread_time()
        for _ in range(10):
            indexed.evaluate(change)
        middle = time.thread_time()
        naive.evaluate(change)
        end = time.thread_time()
        fast_runs, fast_time = fast_runs + 10, fast_time + (middle - start)
        slow_runs, slow_time = slow_runs + 1, slow_time + (end - middle)
        rounds += 1
    return BenchResult(
        evals_per_s=fast_runs / max(fast_time, 1e-9),
        naive_evals_per_s=slow_runs / max(slow_time, 1e-9),
    )
