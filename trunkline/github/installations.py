"""One GitHub port per App installation, shared by every caller in the process.

Performs no I/O itself (adapters and token providers do, when used). Sharing one adapter per
installation is what makes "writes for one installation are serialized" and "one token
cache per installation" hold process-wide, whichever worker asks. Each installation's
`PyGithubAdapter` is wrapped in a `RedactingGitHub` with the composition root's redactor, so
every text the bot writes to GitHub is redacted. Built at the composition root from
`Settings` (`from_settings`) or explicit values (tests, the demo).
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from trunkline.agents.redaction import Redactor
from trunkline.clock import Clock
from trunkline.errors import ConfigurationError
from trunkline.github.adapter import AdapterOptions, PyGithubAdapter
from trunkline.github.port import GitHubPort
from trunkline.github.redacting import RedactingGitHub
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.settings import Settings


class InstallationClients:
    def __init__(
        self,
        *,
        api_url: str,
        app_id: str,
        private_key: str,
        clock: Clock,
        http: httpx.Client,
        redactor: Redactor,
        bot_login: str | None = None,
        options: AdapterOptions | None = None,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._app_id = app_id
        self._private_key = private_key
        self._clock = clock
        self._http = http
        self._bot_login = bot_login
        self._options = options
        self._redactor = redactor
        self._guard = threading.Lock()
        self._adapters: dict[int, RedactingGitHub] = {}
        self._tokens: dict[int, InstallationTokenProvider] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock, http: httpx.Client, redactor: Redactor
    ) -> InstallationClients:
        if not settings.github_app_id or settings.github_private_key_path is None:
            raise ConfigurationError(
                "set TRUNKLINE_GITHUB_APP_ID and TRUNKLINE_GITHUB_PRIVATE_KEY_PATH"
            )
        key_path = Path(settings.github_private_key_path)
        try:
            private_key = key_path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(
                f"cannot read the App private key {key_path}: {error}"
            ) from None
        return cls(
            api_url=settings.github_api_url,
            app_id=settings.github_app_id,
            private_key=private_key,
            clock=clock,
            http=http,
            redactor=redactor,
            bot_login=settings.github_bot_login,
            options=AdapterOptions(min_write_interval=settings.github_min_write_interval),
        )

    def tokens(self, installation_id: int) -> InstallationTokenProvider:
        """The installation's token cache (also what git pushes take their token from)."""
        with self._guard:
            provider = self._tokens.get(installation_id)
            if provider is None:
                provider = InstallationTokenProvider(
                    base_url=self._api_url,
                    app_id=self._app_id,
                    private_key=self._private_key,
                    installation_id=installation_id,
                    clock=self._clock,
                    http=self._http,
                )
                self._tokens[installation_id] = provider
            return provider

    def for_installation(self, installation_id: int) -> GitHubPort:
        """The installation's port: its adapter behind the redactor."""
        tokens = self.tokens(installation_id)
        with self._guard:
            port = self._adapters.get(installation_id)
            if port is None:
                adapter = PyGithubAdapter(
                    base_url=self._api_url,
                    tokens=tokens,
                    clock=self._clock,
                    bot_login=self._bot_login,
                    options=self._options,
                )
                port = RedactingGitHub(adapter, self._redactor)
                self._adapters[installation_id] = port
            return port
