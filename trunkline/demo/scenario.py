"""The demo's world as data: the project, its policy, the people, the issues and the agents'
scripts for each issue.

Pure; performs no I/O (the runner writes `PROJECT_FILES` to disk and seeds the forge).

The project (`maya/toolkit`) is a small stdlib-only Python package with `unittest` tests, so
the forge's CI, the self-check and the executor's `run_command` run real tests without
installing anything. Its policy (`.github/trunkline.yml`) has one subsystem per package and
one for the CI configuration, which is high risk and needs the maintainer's approval.

Each issue says what it demonstrates (`Issue.shows`); `Issue.agents` is the behaviour of the
scripted agents on it (`trunkline.demo.agents` turns a Messages API request into the next
answer from these).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OWNER = "maya"  # the maintainer: owns the repository, labels issues, approves risky changes
OUTSIDER = "otto"  # an outside contributor: may triage (label), may not write or approve
REPO_NAME = "toolkit"
REPO = f"{OWNER}/{REPO_NAME}"
DISPATCH_LABEL = "agent"
ESCALATION_LABEL = "needs-human"
TEST_COMMAND = "python3 -m unittest discover -q"
MODEL = "claude-sonnet-4-5"

POLICY_YAML = f"""\
# The policy trunkline reads from the base branch (see docs/policy.md).
version: 1
dispatch:
  label: {DISPATCH_LABEL}
  min_permission: write
  max_active: 6
subsystems:
  calc: {{paths: ["calc/"], owners: [{OWNER}]}}
  text: {{paths: ["text/"], owners: [{OWNER}]}}
  money: {{paths: ["money/"], owners: [{OWNER}]}}
  stats: {{paths: ["stats/"], owners: [{OWNER}]}}
  ci: {{paths: [".github/workflows/"], owners: [{OWNER}]}}
risk_levels: [low, medium, high]
risk:
  high: {{paths: [".github/workflows/**"]}}
approvals:
  high: {{required: 1, from: [{OWNER}]}}
queue:
  base: main
  required_checks: [ci]
  merge_method: merge
  batch_size: 1
agents:
  commands: ["{TEST_COMMAND}"]
  executor: {{max_turns: 12}}
  reviewer: {{max_rounds: 2}}
  budget: {{usd: 1.0, tokens: 250000, wall: 10m}}
escalation:
  label: {ESCALATION_LABEL}
  notify: [{OWNER}]
"""

CI_WORKFLOW = """\
name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: python3 -m unittest discover -q
"""

CI_WORKFLOW_FIXED = """\
name: ci
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        python: ["3.11", "3.12"]
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "${{ matrix.python }}"}
      - run: python3 -m unittest discover -q
"""

ARITH = '''\
"""Arithmetic helpers."""


def add(a, b):
    return a + b


def subtract(a, b):
    return a - b
'''

ARITH_FIXED = (
    ARITH
    + """

def multiply(a, b):
    return a * b
"""
)

TEST_ARITH = """\
import unittest

from calc.arith import add, subtract


class ArithTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_subtract(self):
        self.assertEqual(subtract(5, 3), 2)
"""

TEST_ARITH_FIXED = (
    TEST_ARITH.replace("add, subtract", "add, multiply, subtract")
    + """
    def test_multiply(self):
        self.assertEqual(multiply(4, 3), 12)
"""
)

ROUNDING = '''\
"""Rounding for display."""


def round_half_up(value, digits=0):
    return round(value, digits)
'''

ROUNDING_FIXED = '''\
"""Rounding for display."""

from decimal import ROUND_HALF_UP, Decimal


def round_half_up(value, digits=0):
    exponent = Decimal(1).scaleb(-digits)
    return float(Decimal(str(value)).quantize(exponent, rounding=ROUND_HALF_UP))
'''

TEST_ROUNDING = """\
import unittest

from calc.rounding import round_half_up


class RoundingTest(unittest.TestCase):
    def test_whole(self):
        self.assertEqual(round_half_up(3.4), 3)
"""

TEST_ROUNDING_FIXED = (
    TEST_ROUNDING
    + """
    def test_half_rounds_up(self):
        self.assertEqual(round_half_up(2.5), 3)
        self.assertEqual(round_half_up(0.125, 2), 0.13)
"""
)

SLUG = '''\
"""URL slugs."""


def slugify(text):
    return "-".join(text.lower().split(" "))
'''

SLUG_FIXED = '''\
"""URL slugs."""

import re


def slugify(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
'''

TEST_SLUG = """\
import unittest

from text.slug import slugify


class SlugTest(unittest.TestCase):
    def test_words(self):
        self.assertEqual(slugify("Hello World"), "hello-world")
"""

TEST_SLUG_FIXED = (
    TEST_SLUG
    + """
    def test_collapses_separators(self):
        self.assertEqual(slugify("Hello,  World!"), "hello-world")
"""
)

PRICE = '''\
"""Prices for people."""


def format_price(cents):
    return f"${cents // 100}.{cents % 100:02d}"
'''

PRICE_FIXED = '''\
"""Prices for people."""


def format_price(cents):
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}${cents // 100}.{cents % 100:02d}"
'''

TEST_PRICE = """\
import unittest

from money.price import format_price


class PriceTest(unittest.TestCase):
    def test_dollars_and_cents(self):
        self.assertEqual(format_price(1205), "$12.05")
"""

TEST_PRICE_FIXED = (
    TEST_PRICE
    + """
    def test_negative(self):
        self.assertEqual(format_price(-250), "-$2.50")
"""
)

SUMMARY = '''\
"""Summary statistics."""


def mean(values):
    return sum(values) / len(values)
'''

TEST_SUMMARY = """\
import unittest

from stats.summary import mean


class SummaryTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3]), 2)
"""

PROJECT_FILES: dict[str, str] = {
    "README.md": "# toolkit\n\nSmall helpers. Run the tests: `python3 -m unittest discover -q`\n",
    ".gitignore": "__pycache__/\n*.pyc\n",
    ".github/trunkline.yml": POLICY_YAML,
    ".github/workflows/ci.yml": CI_WORKFLOW,
    "calc/__init__.py": "",
    "calc/arith.py": ARITH,
    "calc/test_arith.py": TEST_ARITH,
    "calc/rounding.py": ROUNDING,
    "calc/test_rounding.py": TEST_ROUNDING,
    "text/__init__.py": "",
    "text/slug.py": SLUG,
    "text/test_slug.py": TEST_SLUG,
    "money/__init__.py": "",
    "money/price.py": PRICE,
    "money/test_price.py": TEST_PRICE,
    "stats/__init__.py": "",
    "stats/summary.py": SUMMARY,
    "stats/test_summary.py": TEST_SUMMARY,
}


@dataclass(frozen=True)
class Finding:
    """A reviewer finding (`trunkline.agents.contracts.Finding` as plain data)."""

    path: str
    line: int
    severity: str
    message: str


@dataclass(frozen=True)
class AgentScript:
    """How the scripted agents behave on one issue.

    `writes`: the executor's first round (path -> content); `rework`: what it writes when the
    reviewer asked for changes (its findings are in the executor's first message).
    `review_needs`: a text the reviewer requires in the diff; without it the reviewer
    requests changes with `review_finding`. `tokens_per_turn`: reported input tokens of each
    executor turn (a runaway executor that blows the budget), 0: computed from the sizes.
    """

    summary: str
    paths: tuple[str, ...]
    writes: tuple[tuple[str, str], ...] = ()
    rework: tuple[tuple[str, str], ...] = ()
    review_needs: str | None = None
    review_finding: Finding | None = None
    tokens_per_turn: int = 0


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    author: str
    labeled_by: str
    shows: str
    agents: AgentScript
    subsystems: tuple[str, ...] = field(default=())


ISSUES: tuple[Issue, ...] = (
    Issue(
        1,
        "calc: add multiply()",
        "`calc.arith` can add and subtract but not multiply. Add `multiply(a, b)` with a test.",
        author=OWNER,
        labeled_by=OWNER,
        shows="holds the calc lock; #2 waits for it",
        subsystems=("calc",),
        agents=AgentScript(
            "Add multiply() to calc.arith with a unit test.",
            ("calc/arith.py", "calc/test_arith.py"),
            writes=(("calc/arith.py", ARITH_FIXED), ("calc/test_arith.py", TEST_ARITH_FIXED)),
        ),
    ),
    Issue(
        2,
        "calc: round_half_up() rounds 2.5 down",
        "`round_half_up(2.5)` returns 2 (banker's rounding). It should return 3.",
        author=OWNER,
        labeled_by=OWNER,
        shows="same subsystem as #1: serialized by the calc lock",
        subsystems=("calc",),
        agents=AgentScript(
            "Round half up with decimal.ROUND_HALF_UP and test the halves.",
            ("calc/rounding.py", "calc/test_rounding.py"),
            writes=(
                ("calc/rounding.py", ROUNDING_FIXED),
                ("calc/test_rounding.py", TEST_ROUNDING_FIXED),
            ),
        ),
    ),
    Issue(
        3,
        "text: slugify() keeps punctuation and double dashes",
        '`slugify("Hello,  World!")` gives `hello,--world!`; it should give `hello-world`.',
        author=OUTSIDER,
        labeled_by=OWNER,
        shows="another subsystem: runs in parallel with #1",
        subsystems=("text",),
        agents=AgentScript(
            "Collapse every run of non-alphanumerics into one dash.",
            ("text/slug.py", "text/test_slug.py"),
            writes=(("text/slug.py", SLUG_FIXED), ("text/test_slug.py", TEST_SLUG_FIXED)),
        ),
    ),
    Issue(
        4,
        "ci: run the tests on Python 3.12 and on pull requests",
        "The workflow only runs on push and only on 3.11.",
        author=OUTSIDER,
        labeled_by=OWNER,
        shows="touches CI config: high risk, the maintainer must approve (the outsider cannot)",
        subsystems=("ci",),
        agents=AgentScript(
            "Add a Python version matrix and the pull_request trigger to the CI workflow.",
            (".github/workflows/ci.yml",),
            writes=((".github/workflows/ci.yml", CI_WORKFLOW_FIXED),),
        ),
    ),
    Issue(
        5,
        "money: format_price() is wrong for refunds",
        "`format_price(-250)` gives `$-3.50`; it should give `-$2.50`.",
        author=OWNER,
        labeled_by=OWNER,
        shows="the first review requests changes (a missing test); the second approves",
        subsystems=("money",),
        agents=AgentScript(
            "Format the sign before the dollar sign.",
            ("money/price.py", "money/test_price.py"),
            writes=(("money/price.py", PRICE_FIXED),),
            rework=(("money/price.py", PRICE_FIXED), ("money/test_price.py", TEST_PRICE_FIXED)),
            review_needs="def test_negative",
            review_finding=Finding(
                "money/price.py",
                5,
                "major",
                "No test covers negative amounts; add one to money/test_price.py.",
            ),
        ),
    ),
    Issue(
        6,
        "stats: add median() for the nightly report",
        "The nightly report needs `median(values)` over large samples.",
        author=OWNER,
        labeled_by=OWNER,
        shows="the executor runs away: the item exceeds its budget and escalates",
        subsystems=("stats",),
        agents=AgentScript(
            "Add median() to stats.summary.",
            ("stats/summary.py", "stats/test_summary.py"),
            tokens_per_turn=90_000,
        ),
    ),
    Issue(
        7,
        "text: add title_case()",
        "Please add `title_case(text)` next to `slugify`.",
        author=OUTSIDER,
        labeled_by=OUTSIDER,
        shows="labeled by the outside contributor: refused politely",
        subsystems=(),
        agents=AgentScript("(never planned)", ("text/",)),
    ),
)

BY_NUMBER: dict[int, Issue] = {issue.number: issue for issue in ISSUES}
RISKY_ISSUE = 4
BUDGET_ISSUE = 6
REWORK_ISSUE = 5
REFUSED_ISSUE = 7
SERIALIZED_ISSUES = (1, 2)
PARALLEL_ISSUE = 3

#: What an uninterrupted run ends with, per issue (the acceptance tests compare against the
#: facts the run reads back, never against these alone).
EXPECTED_STATES: dict[int, str] = {1: "merged", 2: "merged", 3: "merged", 4: "merged",
                                   5: "merged", 6: "escalated", 7: "refused"}  # fmt: skip


def seed_spec(
    source_dir: str, webhook_url: str, webhook_secret: str, *, ci_command: str = TEST_COMMAND
) -> dict[str, Any]:
    """The forge seed (`trunkline.forge.seed.SeedSpec` as plain data)."""
    return {
        "users": [
            {"login": OWNER, "name": "Maya (maintainer)"},
            {"login": OUTSIDER, "name": "Otto (outside contributor)"},
        ],
        "app": {
            "name": "trunkline",
            "slug": "trunkline",
            "owner": OWNER,
            "webhook_url": webhook_url,
            "webhook_secret": webhook_secret,
        },
        "repositories": [
            {
                "owner": OWNER,
                "name": REPO_NAME,
                "source": source_dir,
                "default_branch": "main",
                "protected_branches": ["main"],
                "collaborators": {OUTSIDER: "triage"},
                "labels": [
                    {"name": DISPATCH_LABEL, "color": "5319e7", "description": "trunkline: go"},
                    {"name": ESCALATION_LABEL, "color": "d93f0b", "description": "stuck"},
                ],
                "issues": [
                    {"title": issue.title, "body": issue.body, "author": issue.author}
                    for issue in ISSUES
                ],
                # CI runs the project's real tests on every integration commit the queue
                # pushes (the queue fast-forwards main only to commits that passed)
                "ci": {"command": ci_command, "branches": ["trunkline/queue/*"]},
            }
        ],
        "installation": {"account": OWNER, "repositories": [REPO_NAME]},
    }
