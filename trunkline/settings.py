"""Application settings, read from the environment once at the composition root.

Nothing imports a settings singleton: `load_settings()` is called by the CLI (or a test) and
the resulting `Settings` object is passed down. Every variable uses the `TRUNKLINE_` prefix,
except `DATABASE_URL`, which is also accepted bare because every deployment tool knows it.
"""

from __future__ import annotations

from pathlib import Path

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

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded default SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trunkline.db').resolve()}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (for tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
