"""Which outside resources a test needs, and what happens when one is missing.

Without the environment variable CI, a test whose resource is missing is skipped with a
visible reason. With CI set, it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_GITHUB = REPO_ROOT.parent / "shared" / "github"
# What the tests use of it, made by scripts/extract_github_contract.py (for machines without it).
GITHUB_EXTRACT = REPO_ROOT / "tests" / "data" / "github"
POSTGRES_ADMIN_URL = os.environ.get(
    "TRUNKLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def need(available: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when `what` is not available."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is required when CI is set, and it is missing", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    need(postgres_reachable(), "PostgreSQL on 127.0.0.1:5432")


def require_bwrap() -> None:
    need(shutil.which("bwrap") is not None, "bubblewrap (bwrap)")


def require_shared_github() -> Path:
    """GitHub's published API descriptions: the full ones beside the repository, else the
    committed extract of what the tests use (scripts/extract_github_contract.py)."""
    for folder in (SHARED_GITHUB, GITHUB_EXTRACT):
        if (folder / "rest-api.json").is_file():
            return folder
    need(False, f"GitHub's API descriptions in {SHARED_GITHUB} or {GITHUB_EXTRACT}")
    raise AssertionError("unreachable")
