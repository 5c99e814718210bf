"""`trunkline policy check|explain|schema` and `trunkline bench policy`, plus shipped files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from prerequisites import REPO_ROOT

from trunkline.cli import main
from trunkline.policies.bench import generate_change, generate_policy
from trunkline.policies.evaluation import CompiledPolicy
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Policy, policy_json_schema

SHIPPED = [
    *sorted((REPO_ROOT / "examples" / "policies").glob("*.yml")),
    REPO_ROOT / ".github" / "trunkline.yml",
]


def _write(tmp_path: Path, text: str, name: str = "trunkline.yml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_examples_exist() -> None:
    names = {path.name for path in SHIPPED}
    assert {"small-service.yml", "monorepo.yml", "strict.yml", "trunkline.yml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(path)]) == 0
    assert capsys.readouterr().out == "ok\n"


def test_check_prints_one_located_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path, "dispatch:\n  max_active: -1\n  lable: x\n")
    assert main(["policy", "check", file]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{file}:2:15: dispatch.max_active: Input should be greater than or equal to 0",
        f"{file}:3:3: unknown key 'lable' in dispatch; did you mean 'label'? "
        "(allowed: label, min_permission, max_active)",
    ]


def test_check_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(tmp_path / "nope.yml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot read" in captured.err
    assert "nope.yml" in captured.err


def test_check_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


STRICT = str(REPO_ROOT / "examples" / "policies" / "strict.yml")


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy",
            "explain",
            STRICT,
            "--path",
            ".github/workflows/ci.yml",
            "--path",
            "src/app.py",
            "--deleted",
            "db/migrations/0001.sql",
            "--lines",
            "10",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"subsystems", "owners", "risk", "reasons", "approvals"} <= set(data)
    assert data["subsystems"] == ["app", "ci", "migrations"]
    assert data["owners"] == ["@acme/devs", "@acme/release", "erin", "frank", "grace"]
    assert data["risk"] == "high"
    assert data["reasons"] == [
        "path .github/workflows/ci.yml matches high risk pattern .github/",
        "path db/migrations/0001.sql matches high risk pattern **/migrations/**",
        "file db/migrations/0001.sql is deleted (high risk)",
    ]
    assert data["approvals"]["required"] == 2
    assert data["approvals"]["from"] == "owners"
    assert data["approvals"]["plan_approval"] is True


def test_explain_text_with_codeowners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _write(tmp_path, "subsystems:\n  web: {paths: ['web/']}\n")
    codeowners = _write(tmp_path, "web/ @frontend-lead\n", "CODEOWNERS")
    code = main(
        [
            "policy",
            "explain",
            policy,
            "--path",
            "web/a.ts",
            "--path",
            "x",
            "--codeowners",
            codeowners,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "web: owners frontend-lead [from codeowners]" in out
    assert "default (default subsystem): owners (none) [from codeowners]" in out
    assert "Risk: low" in out
    assert "Approvals: none required" in out


def test_explain_invalid_policy_prints_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path, "version: 3\n")
    assert main(["policy", "explain", file, "--path", "a", "--json"]) == 1
    assert capsys.readouterr().out.startswith(f"{file}:1:10: unsupported policy version 3")


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert "subsystems" in schema["properties"]


def test_bench_json_prints_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "policy", "--json", "--seconds", "0.01"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"evals_per_s", "naive_evals_per_s", "speedup"}
    assert all(isinstance(value, float | int) and value > 0 for value in figures.values())


def test_benchmark_workload_indexed_equals_naive() -> None:
    policy = generate_policy()
    change = generate_change()
    assert len(policy.subsystems) >= 200
    assert len(change.touched_paths()) == 1000
    indexed = CompiledPolicy(policy).evaluate(change)
    assert indexed == CompiledPolicy(policy, indexed=False).evaluate(change)
    assert indexed.risk == "high"
    assert any(route.subsystems == ("default",) for route in indexed.paths)


def test_check_runs_as_a_console_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trunkline", "policy", "check", str(SHIPPED[0])],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_policy_matches_the_json_schema_and_round_trips(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    validator.validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    loaded = load_policy(path.read_text(encoding="utf-8"), str(path))
    assert isinstance(loaded, Policy), loaded
    dumped = loaded.model_dump(mode="json", by_alias=True)
    assert Policy.model_validate(dumped) == loaded
