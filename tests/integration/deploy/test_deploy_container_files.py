"""The Dockerfile, .dockerignore and compose.yaml say what docs/deploy.md promises.

Checked statically (no Docker daemon is needed): the image is slim Python 3.11, installs git
and bubblewrap, runs as a non-root user, runs `trunkline serve` with arguments the real CLI
accepts, and health-checks a route the bot serves; compose runs PostgreSQL, points
DATABASE_URL at it, migrates before serving, hands the key over as a secret, and uses only
settings trunkline has.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prerequisites import REPO_ROOT
from sqlalchemy.engine import make_url

from trunkline.bot.app import create_app
from trunkline.cli import build_parser
from trunkline.settings import Settings

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
DOCKERIGNORE = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8")
COMPOSE_TEXT = (REPO_ROOT / "compose.yaml").read_text(encoding="utf-8")
DEPLOY_DOC = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def _instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    result = []
    for entry in logical:
        keyword, _, argument = entry.partition(" ")
        result.append(Instruction(keyword.upper(), argument.strip()))
    return result


INSTRUCTIONS = _instructions(DOCKERFILE)


def _final_stage() -> list[Instruction]:
    starts = [n for n, i in enumerate(INSTRUCTIONS) if i.keyword == "FROM"]
    assert starts, "no FROM"
    return INSTRUCTIONS[starts[-1] :]


def _exec_form(argument: str) -> list[str]:
    loaded = yaml.safe_load(argument)  # a JSON array is valid YAML
    assert isinstance(loaded, list), f"use the exec form (a JSON array): {argument}"
    return [str(part) for part in loaded]


def _env_names() -> set[str]:
    names = {f"TRUNKLINE_{name.upper()}" for name in Settings.model_fields}
    return names | {"DATABASE_URL"}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_TEXT)
    assert isinstance(loaded, dict)
    return loaded


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _trunkline_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if "command" in service and _command(service)[:1] == ["trunkline"]
    }


def test_deploy_image_is_slim_python_311_with_git_and_bubblewrap() -> None:
    stage = _final_stage()
    base = stage[0].argument.split()[0]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?", base), base
    installs = " ".join(i.argument for i in stage if i.keyword == "RUN")
    match = re.search(r"apt-get install ([^&;]*)", installs)
    assert match is not None, "the final stage installs no system packages"
    packages = set(match.group(1).split())
    assert {"git", "bubblewrap"} <= packages
    assert "--no-install-recommends" in packages
    assert "rm -rf /var/lib/apt/lists/*" in installs


def test_deploy_image_runs_trunkline_serve_as_a_non_root_user() -> None:
    stage = _final_stage()
    users = [n for n, i in enumerate(stage) if i.keyword == "USER"]
    assert users, "the image runs as root"
    user = stage[users[-1]].argument.split(":")[0]
    assert user not in ("root", "0")
    assert re.search(rf"useradd [^&]*\b{re.escape(user)}\b", DOCKERFILE), "the user is not made"
    (command,) = [i for i in stage if i.keyword in ("CMD", "ENTRYPOINT")]
    argv = _exec_form(command.argument)
    assert argv[:2] == ["trunkline", "serve"]
    assert users[-1] < stage.index(command)
    parsed = build_parser().parse_args(argv[1:])  # the real CLI accepts the arguments
    assert parsed.host == "0.0.0.0"  # the dashboard then needs TRUNKLINE_DASHBOARD_TOKEN
    (expose,) = [i for i in stage if i.keyword == "EXPOSE"]
    assert expose.argument.split("/")[0] == str(parsed.port)
    baked = " ".join(i.argument for i in INSTRUCTIONS if i.keyword in ("ENV", "ARG"))
    assert "TRUNKLINE_DASHBOARD_TOKEN" not in baked  # a secret is never baked into the image


def test_deploy_image_health_check_calls_a_route_the_bot_serves(tmp_path: Path) -> None:
    (check,) = [i for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", check.argument)
    assert url is not None, check.argument
    (command,) = [i for i in _final_stage() if i.keyword == "CMD"]
    assert url.group(1) == str(build_parser().parse_args(_exec_form(command.argument)[1:]).port)
    settings = Settings(data_dir=tmp_path, webhook_secret="s")
    app = create_app(settings, require_schema=False)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert url.group(2) in paths


def test_deploy_build_context_keeps_what_the_image_copies_and_no_secrets() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.splitlines() if not line.startswith("#")}
    copied: set[str] = set()
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from" not in instruction.argument:
            copied.update(instruction.argument.split()[:-1])
    assert copied == {"pyproject.toml", "README.md", "trunkline"}
    for source in copied:
        assert (REPO_ROOT / source).exists()
        assert source not in ignored
    assert {".env", "*.pem", "secrets/", ".git", ".venv"} <= ignored


def test_deploy_compose_runs_postgres_and_points_database_url_at_it() -> None:
    services = _compose()["services"]
    (postgres_name,) = [
        name for name, s in services.items() if str(s.get("image", "")).startswith("postgres:")
    ]
    postgres = services[postgres_name]
    trunkline = _trunkline_services()
    assert trunkline, "no service runs trunkline"
    for name, service in trunkline.items():
        raw = service["environment"]["DATABASE_URL"]
        url = make_url(re.sub(r"\$\{[^}]*\}", "password", raw))
        assert url.drivername == "postgresql+psycopg", name
        assert url.host == postgres_name
        assert url.username == postgres["environment"]["POSTGRES_USER"]
        assert url.database == postgres["environment"]["POSTGRES_DB"]
        assert service["env_file"] == ".env"


def test_deploy_compose_migrates_before_serving() -> None:
    services = _trunkline_services()
    commands = {name: _command(service) for name, service in services.items()}
    (migrate,) = [name for name, argv in commands.items() if argv[1:3] == ["db", "upgrade"]]
    (serve,) = [name for name, argv in commands.items() if argv[1:2] == ["serve"]]
    parser = build_parser()
    for argv in commands.values():
        parser.parse_args(argv[1:])  # every command is one the CLI accepts
    for name, argv in commands.items():
        if name == migrate:
            continue
        condition = services[name]["depends_on"][migrate]["condition"]
        assert condition == "service_completed_successfully", (name, argv)
    postgres_dependency = services[migrate]["depends_on"]
    assert next(iter(postgres_dependency.values()))["condition"] == "service_healthy"
    assert services[serve]["ports"]


def test_deploy_compose_passes_the_private_key_as_a_secret() -> None:
    compose = _compose()
    declared = compose["secrets"]
    for name, service in _trunkline_services().items():
        key_path = service["environment"]["TRUNKLINE_GITHUB_PRIVATE_KEY_PATH"]
        secret = key_path.removeprefix("/run/secrets/")
        assert key_path.startswith("/run/secrets/"), name
        assert secret in service["secrets"]
        assert secret in declared
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")  # ignored by .dockerignore


def test_deploy_every_trunkline_variable_in_compose_and_the_guide_is_a_setting() -> None:
    known = _env_names()
    in_compose = set(re.findall(r"\b(TRUNKLINE_[A-Z0-9_]+|DATABASE_URL)\b", COMPOSE_TEXT))
    assert in_compose, "compose sets no trunkline variable"
    assert in_compose <= known, sorted(in_compose - known)
    in_guide = set(re.findall(r"\b(TRUNKLINE_[A-Z0-9_]+)\b", DEPLOY_DOC))
    assert in_guide <= known, sorted(in_guide - known)
    for service in _trunkline_services().values():
        assert set(service["environment"]) <= known
