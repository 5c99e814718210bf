"""Secret redaction for every text trunkline writes to GitHub, the store, the model or logs.

Pure; performs no I/O. A `Redactor` replaces every configured secret value (and its
presence in common encodings) and every token-looking string with a placeholder: GitHub
tokens (`ghp_`/`ghs_`/`gho_`/`ghu_`/`ghr_`, whose body may hold `_` and `-` as the local
forge's do, and `github_pat_`), Anthropic `sk-ant-`, `Bearer ...`, `Authorization: ...`
header values, HTTP Basic credentials (`Basic <base64 of user:password>`), the password of a
URL's userinfo (`scheme://user:PASSWORD@host`), AWS access key ids, JWTs and PEM private keys
(also their body lines when the `BEGIN` line was cut off).

`redactor_for(settings, environ)` is the one way to build the process's redactor at a
composition root: every `SecretStr` in the settings, the password in `database_url`, every
value of an environment variable whose name says it holds a secret, plus `extra_secrets`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from trunkline.settings import Settings

REDACTED = "[REDACTED]"

# Environment variable names holding one of these words hold a secret.
SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "PRIVATE_KEY")

_B64 = r"[A-Za-z0-9+/]{8,}={0,2}"


def _basic_credentials(match: re.Match[str]) -> str:
    """`Basic <b64>` only when the blob decodes to `user:password` (so "basic functionality"
    in prose stays)."""
    blob = match.group("blob")
    try:
        decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    if b":" not in decoded:
        return match.group(0)
    return f"{match.group('word')} {REDACTED}"


_Replacement = str | Callable[[re.Match[str]], str]

_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9]{20,}"), REDACTED),
    # an Authorization header's value, whatever its scheme
    (
        re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:[A-Za-z\-]+\s+)?[A-Za-z0-9._~+/=\-]{8,}"),
        rf"\1{REDACTED}",
    ),
    (re.compile(rf"(?i)\b(?P<word>basic)\s+(?P<blob>{_B64})"), _basic_credentials),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"), REDACTED),
    (re.compile(r"(?i)\b(?:token|authorization)\s+[A-Za-z0-9._~+/=\-]{20,}"), REDACTED),
    # the password of a URL's userinfo: scheme://user:PASSWORD@host
    (
        re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@\[\]]*):[^\s/?#@]+@"),
        rf"\1:{REDACTED}@",
    ),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (
        re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
        REDACTED,
    ),
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # the tail of a private key whose BEGIN line was cut off (e.g. the last lines of output)
    (
        re.compile(
            r"(?:^[A-Za-z0-9+/=]{16,}[ \t]*\r?\n)*^[A-Za-z0-9+/=]*-----END [A-Z ]*PRIVATE KEY-----",
            re.MULTILINE,
        ),
        REDACTED,
    ),
)

_MIN_SECRET_LENGTH = 4


def _variants(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    return {
        secret,
        base64.b64encode(raw).decode("ascii").rstrip("="),
        raw.hex(),
        secret[::-1],
    }


@dataclass(frozen=True)
class Redactor:
    """Replaces `secrets` (exact values and simple encodings) and token-like strings."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, secrets: Iterable[str | None]) -> Redactor:
        values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        expanded = {v for s in values for v in _variants(s) if len(v) >= _MIN_SECRET_LENGTH}
        return cls(tuple(sorted(expanded, key=len, reverse=True)))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _TOKEN_PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def url_password(url: str | None) -> str | None:
    """The password in a URL's userinfo (`postgresql://bot:PASSWORD@db/x`), if any."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


_MIN_ENV_SECRET_LENGTH = 8
_NOT_SECRETS = frozenset({"true", "false", "yes", "no", "none", "null", "on", "off"})


def _may_be_secret(value: str) -> bool:
    """A secret-named variable's value worth redacting: not a number, a flag or a short
    word (`TOKEN_TTL=3600` would otherwise blank every "3600" written anywhere)."""
    stripped = value.strip()
    return (
        len(stripped) >= _MIN_ENV_SECRET_LENGTH
        and not stripped.isdigit()
        and stripped.lower() not in _NOT_SECRETS
    )


def secret_env_values(environ: Mapping[str, str]) -> list[str]:
    """Values of the variables whose name holds a secret word, and URL passwords anywhere."""
    values = [
        value
        for name, value in environ.items()
        if any(word in name.upper() for word in SECRET_ENV_WORDS) and _may_be_secret(value)
    ]
    values.extend(p for value in environ.values() if "://" in value if (p := url_password(value)))
    return values


def settings_secrets(settings: Settings) -> list[str]:
    """Every `SecretStr` value of `settings` and the password in `database_url`."""
    values = [
        value.get_secret_value()
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    password = url_password(settings.database_url)
    if password:
        values.append(password)
    return values


def redactor_for(
    settings: Settings | None,
    environ: Mapping[str, str],
    extra_secrets: Iterable[str] = (),
) -> Redactor:
    """The redactor of a process: the secrets of `settings`, of `environ` and `extra_secrets`.

    Built once at the composition root and passed to everything that writes text to GitHub,
    the store, the model or the logs.
    """
    values: list[str] = list(extra_secrets)
    if settings is not None:
        values.extend(settings_secrets(settings))
    values.extend(secret_env_values(environ))
    return Redactor.of(values)
