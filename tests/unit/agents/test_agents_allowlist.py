"""The command allowlist: exact argv prefixes after shlex, never a shell (pure)."""

from __future__ import annotations

import pytest

from trunkline.agents.sandbox import CommandAllowlist, CommandRefusedError

ALLOW = CommandAllowlist.of(["pytest -q", "python -m pytest", "make test"])


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("pytest -q", ("pytest", "-q")),
        ("pytest  -q   tests/test_a.py", ("pytest", "-q", "tests/test_a.py")),
        ("python -m pytest -k 'not slow'", ("python", "-m", "pytest", "-k", "not slow")),
        ("make test", ("make", "test")),
        ("pytest -q 'a;b'", ("pytest", "-q", "a;b")),  # quoted: a literal argument
    ],
)
def test_agents_allowlist_accepts(command: str, argv: tuple[str, ...]) -> None:
    assert ALLOW.parse(command) == argv


@pytest.mark.parametrize(
    "command",
    [
        "",
        "pytest",  # a shorter argv is not the allowlisted prefix
        "pytest -x",
        "make install",
        "env",
        "git push origin main",
        "curl http://127.0.0.1/",
        "pytest -q; env",
        "pytest -q && env",
        "pytest -q || env",
        "pytest -q | sh",
        "pytest -q > out",
        "pytest -q $(env)",
        "pytest -q `env`",
        "pytest -q ${HOME}",
        "pytest -q 'unterminated",
        "/usr/bin/pytest -q",
        "sh -c 'pytest -q'",
    ],
)
def test_agents_allowlist_refuses(command: str) -> None:
    with pytest.raises(CommandRefusedError):
        ALLOW.parse(command)


def test_agents_allowlist_refusal_names_what_is_allowed() -> None:
    with pytest.raises(CommandRefusedError, match="allowed: pytest -q, python -m pytest"):
        ALLOW.parse("rm -rf /")
