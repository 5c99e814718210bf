"""`trunkline forge seed SPEC`: a YAML spec creates users, the App, a repository from a
directory, labels and issues; a bad spec is a clear error that changes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from trunkline.cli import main
from trunkline.errors import ConfigurationError
from trunkline.forge.seed import load_spec
from trunkline.forge.state import ForgeState


def test_seed_command_creates_the_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "app.py").write_text("print('hi')\n")
    spec = {
        "users": [{"login": "alice"}, {"login": "bob"}],
        "app": {"owner": "alice", "webhook_secret": "s"},
        "repositories": [
            {
                "owner": "alice",
                "name": "demo",
                "source": "repo",
                "collaborators": {"bob": "triage"},
                "labels": [{"name": "bug", "color": "#ff0000"}],
                "issues": [{"title": "First", "author": "bob", "labels": ["bug"]}],
                "ci": {"command": "true", "branches": ["main"]},
            }
        ],
        "installation": {"account": "alice", "repositories": ["demo"]},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    data = tmp_path / "data"
    assert main(["forge", "seed", str(path), "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["tokens"]) == {"alice", "bob"}
    assert Path(result["private_key_path"]).read_text().startswith("-----BEGIN PRIVATE KEY")
    state = ForgeState.open(data)
    repo = state.repo_by_name("alice", "demo")
    assert repo is not None
    assert repo.ci is not None
    assert repo.ci["command"] == "true"
    [issue] = state.issues.values()
    assert issue.title == "First"
    assert [state.labels[x].name for x in issue.label_ids] == ["bug"]
    files = subprocess.run(
        ["git", "-C", result["repositories"]["alice/demo"], "ls-tree", "--name-only", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files == ["app.py"]


@pytest.mark.parametrize(
    "spec",
    [
        {"users": [{"login": "a", "nickname": "typo"}]},
        {"repositories": [{"owner": "ghost", "name": "x"}]},
        "not a mapping",
    ],
)
def test_bad_specs_are_configuration_errors(tmp_path: Path, spec: object) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    if isinstance(spec, dict) and "repositories" in spec:
        from trunkline.forge.runtime import Forge
        from trunkline.forge.seed import apply_seed

        forge = Forge(ForgeState.open(tmp_path / "data"), "http://127.0.0.1:1")
        with pytest.raises(ConfigurationError, match="unknown user"):
            apply_seed(forge, load_spec(path), tmp_path)
    else:
        with pytest.raises(ConfigurationError, match="bad forge seed spec"):
            load_spec(path)


def test_seeding_twice_creates_nothing_twice(tmp_path: Path) -> None:
    spec = {
        "users": [{"login": "alice"}],
        "repositories": [
            {
                "owner": "alice",
                "name": "demo",
                "issues": [{"title": "Once"}],
                "labels": [{"name": "x"}],
            }
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    data = tmp_path / "data"
    for _ in range(2):
        assert main(["forge", "seed", str(path), "--data", str(data)]) == 0
    state = ForgeState.open(data)
    assert [i.title for i in state.issues.values()] == ["Once"]
    assert len(state.repos) == 1
    assert len(state.labels) == 1
    assert len(state.users) == 1


def test_seed_with_a_relative_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("print('hi')\n")
    spec = {
        "users": [{"login": "alice"}],
        "app": {"owner": "alice"},
        "repositories": [{"owner": "alice", "name": "demo", "source": "src"}],
        "installation": {"account": "alice"},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    assert main(["forge", "seed", "spec.yaml", "--data", "forge-data"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["repositories"]["alice/demo"]).is_absolute()
    assert ForgeState.open(tmp_path / "forge-data").repo_by_name("alice", "demo") is not None


def test_forge_refuses_a_public_address_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["forge", "--host", "0.0.0.0", "--data", str(tmp_path / "d")])
    assert code == 2
    assert "--allow-public" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
