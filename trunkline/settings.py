"""Application settings, read from the environment once at the composition root.

Nothing imports a settings singleton: `load_settings()` is called by the CLI (or a test) and
the resulting `Settings` object is passed down. Every variable uses the `TRUNKLINE_` prefix,
except `DATABASE_URL`, which is also accepted bare because every deployment tool knows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRUNKLINE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path(".trunkline"),
        description="Directory for the SQLite database, mirrors and worktrees.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TRUNKLINE_DATABASE_URL"),
        description="SQLAlchemy URL; default: a SQLite file in the data directory.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="Shared secret that signs GitHub webhook deliveries."
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    job_lease_seconds: float = Field(
        default=30.0, gt=0, description="How long a claimed job stays leased without a heartbeat."
    )
    worker_threads: int = Field(default=2, ge=1, description="Job worker threads per process.")
    worker_poll_seconds: float = Field(
        default=0.5, gt=0, description="How often an idle worker looks for due jobs."
    )
    intake_batch_max: int = Field(
        default=256, ge=1, description="Most deliveries stored in one intake transaction."
    )
    agent_provider: Literal["anthropic", "scripted"] = Field(
        default="anthropic", description="Model provider of the agents: anthropic or scripted."
    )
    agent_model: str = Field(default="claude-sonnet-4-5", description="Model the agents use.")
    anthropic_api_key: SecretStr | None = Field(
        default=None, description="API key of the anthropic provider."
    )
    anthropic_base_url: str | None = Field(
        default=None, description="Messages API base URL (default: the SDK's)."
    )
    agent_max_retries: int = Field(
        default=4, ge=0, description="SDK retries for 429/5xx/529 per model call."
    )
    agent_request_timeout: float = Field(
        default=300.0, gt=0, description="Seconds per model call attempt."
    )
    agent_script: Path | None = Field(
        default=None, description="YAML/JSON script replayed by the scripted provider."
    )
    agent_prices: dict[str, dict[str, float | None]] = Field(
        default_factory=lambda: {
            model: {
                "input": input_usd,
                "output": output_usd,
                "cache_write": None,
                "cache_read": None,
            }
            for model, input_usd, output_usd in (
                ("claude-opus-4-1", 15.0, 75.0),
                ("claude-sonnet-4-5", 3.0, 15.0),
                ("claude-haiku-4-5", 1.0, 5.0),
            )
        },
        description="USD per million tokens per model (JSON: input, output, cache_write, "
        "cache_read), for the USD budget; validated by trunkline.agents.composition.",
    )
    sandbox: Literal["bubblewrap", "none"] = Field(
        default="bubblewrap", description="How run_command is isolated; none is unsandboxed."
    )
    sandbox_path: str = Field(
        default="/usr/local/bin:/usr/bin:/bin", description="PATH inside the command sandbox."
    )
    sandbox_command_timeout: float = Field(
        default=600.0, gt=0, description="Seconds before a sandboxed command is killed."
    )
    sandbox_output_cap: int = Field(
        default=64_000, ge=1000, description="Bytes of command output kept."
    )
    git_author_name: str = Field(default="trunkline[bot]", description="Author of agent commits.")
    git_author_email: str = Field(
        default="trunkline[bot]@users.noreply.github.com", description="Email of agent commits."
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        description="REST API root: api.github.com, https://HOST/api/v3 (Enterprise, forge).",
    )
    github_app_id: str | None = Field(default=None, description="The GitHub App's id.")
    github_private_key_path: Path | None = Field(
        default=None, description="PEM file of the App's private key (signs the App JWT)."
    )
    github_bot_login: str | None = Field(
        default=None, description="The App's bot login (e.g. trunkline[bot]); owns sticky comments."
    )
    github_min_write_interval: float = Field(
        default=1.0, ge=0, description="Seconds between writes per installation (secondary limits)."
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="Bearer token / basic-auth password of the dashboard and /metrics; "
        "required to bind the dashboard to a non-loopback address.",
    )
    github_web_url: str = Field(
        default="https://github.com",
        description="Web base URL for links to issues, PRs and commits in the dashboard.",
    )
    daily_budget_usd: float | None = Field(
        default=None, ge=0, description="Agent spend per UTC day shown against spend (USD)."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log line format: json (structured) or text."
    )
    team_members: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Members of teams named as approvers, e.g. {"@acme/api": ["alice"]} '
        "(JSON); team membership is not looked up on GitHub.",
    )

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded default SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trunkline.db').resolve()}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (for tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
