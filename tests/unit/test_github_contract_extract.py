"""The committed extract of GitHub's API descriptions is exactly what the script makes.

Tests read `../shared/github` when it is there and `tests/data/github` otherwise; this keeps
the two in agreement, so a test never passes on the extract that would fail on the original.
"""

from __future__ import annotations

import importlib.util
import json
import os
from types import ModuleType

import pytest
from prerequisites import GITHUB_EXTRACT, REPO_ROOT, SHARED_GITHUB, need


def _script() -> ModuleType:
    path = REPO_ROOT / "scripts" / "extract_github_contract.py"
    spec = importlib.util.spec_from_file_location("extract_github_contract", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_committed_extract_matches_the_full_descriptions() -> None:
    if os.environ.get("TRUNKLINE_GITHUB_EXTRACT_ONLY"):  # set by the GitHub Actions workflow
        pytest.skip("this machine has only the extract (TRUNKLINE_GITHUB_EXTRACT_ONLY)")
    need((SHARED_GITHUB / "rest-api.json").is_file(), f"the full descriptions in {SHARED_GITHUB}")
    built = _script().build(SHARED_GITHUB)
    for name, document in built.items():
        committed = json.loads((GITHUB_EXTRACT / name).read_text(encoding="utf-8"))
        assert committed == document, (
            f"tests/data/github/{name} is stale: run python scripts/extract_github_contract.py"
        )
