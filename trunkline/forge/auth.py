"""Who is calling: App JWTs, installation tokens, personal tokens, and their permissions.

Pure apart from reading the state passed in (callers hold the lock when they mutate).
An App authenticates with an RS256 JWT (`iss` = app id, `iat`/`exp` checked against the
forge clock or the wall clock, at most 10 minutes apart) and exchanges it for an
installation token valid one hour. A user authenticates with a personal token. Anything
else is "Bad credentials".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trunkline.forge import models as m
from trunkline.forge.state import ForgeState

INSTALLATION_TOKEN_SECONDS = 3600
MAX_JWT_SECONDS = 600
CLOCK_SKEW_SECONDS = 60


class AuthError(Exception):
    """The credentials are missing, malformed, forged or expired (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user, an App (JWT), or an App installation (token)."""

    user: m.User | None = None
    app: m.App | None = None
    installation: m.Installation | None = None

    @property
    def actor(self) -> m.User | None:
        """The user acting: the person, or the App's bot user for an installation."""
        return self.user


def generate_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def verify_app_jwt(state: ForgeState, token: str, *nows: float) -> m.App:
    """The App whose key signed `token`, or AuthError.

    `iat`/`exp` must fit at least one of `nows` (the forge clock and the wall clock: an App
    may sign with either, see `authenticate`)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        app_id = int(str(claims["iss"]))
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise AuthError("A JSON web token could not be decoded") from exc
    app = state.apps.get(app_id)
    if app is None:
        raise AuthError("Integration not found")
    try:
        verified = jwt.decode(
            token,
            app.public_key_pem,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError("A JSON web token could not be decoded") from exc
    iat, exp = float(verified["iat"]), float(verified["exp"])
    if exp - iat > MAX_JWT_SECONDS + CLOCK_SKEW_SECONDS:
        raise AuthError("'Expiration time' claim ('exp') is too far in the future")
    if not any(iat <= now + CLOCK_SKEW_SECONDS for now in nows):
        raise AuthError("'Issued at' claim ('iat') must be an Integer representing the time")
    if not any(iat <= now + CLOCK_SKEW_SECONDS and exp > now for now in nows):
        raise AuthError("'Expiration time' claim ('exp') must be a numeric value in the future")
    return app


def issue_installation_token(state: ForgeState, inst: m.Installation, now: float) -> m.Token:
    token = m.Token(
        token=f"ghs_{secrets.token_urlsafe(27)}",
        installation_id=inst.id,
        expires_at=now + INSTALLATION_TOKEN_SECONDS,
    )
    with state.lock:
        for key in [k for k, t in state.tokens.items() if _expired(t, now - 86400)]:
            del state.tokens[key]  # forget tokens that expired more than a day ago
        state.tokens[token.token] = token
    return token


def issue_personal_token(state: ForgeState, user: m.User) -> m.Token:
    token = m.Token(token=f"ghp_{secrets.token_urlsafe(27)}", user_id=user.id)
    with state.lock:
        state.tokens[token.token] = token
    return token


def _expired(token: m.Token, now: float) -> bool:
    return token.expires_at is not None and token.expires_at <= now


def authenticate(
    state: ForgeState, authorization: str | None, now: float, jwt_now: float
) -> Principal | None:
    """The caller named by an Authorization header; None when there is none.

    Tokens expire on the forge clock (`now`, which tests move forward). An App JWT is
    accepted when its `iat`/`exp` fit the forge clock or the wall clock (`jwt_now`): an App
    that follows the forge clock (a fake clock in tests) and one that reads the real time
    (PyGithub's AppAuth) can both mint tokens after a test moved the forge clock."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("token", "bearer") or not credential:
        raise AuthError("Bad credentials")
    if credential.count(".") == 2 and not credential.startswith(("ghs_", "ghp_")):
        return Principal(app=verify_app_jwt(state, credential, now, jwt_now))
    return principal_for_token(state, credential, now)


def principal_for_token(state: ForgeState, credential: str, now: float) -> Principal:
    token = state.tokens.get(credential)
    if token is None or _expired(token, now):
        raise AuthError("Bad credentials")
    if token.installation_id is not None:
        inst = state.installations.get(token.installation_id)
        if inst is None:
            raise AuthError("Bad credentials")
        app = state.apps[inst.app_id]
        return Principal(user=state.app_bot(app), app=app, installation=inst)
    if token.user_id is None or token.user_id not in state.users:
        raise AuthError("Bad credentials")
    return Principal(user=state.users[token.user_id])


def repo_permission(state: ForgeState, principal: Principal | None, repo: m.Repo) -> m.Permission:
    """What the caller may do on `repo` (public repositories are readable by anyone)."""
    level = m.Permission.NONE
    if principal is not None and principal.installation is not None:
        if repo.id in principal.installation.repository_ids:
            level = m.Permission.WRITE
    elif principal is not None and principal.user is not None:
        level = state.permission(repo, principal.user)
    if not repo.private and level < m.Permission.READ:
        level = m.Permission.READ
    return level


def may_update_protected(state: ForgeState, principal: Principal | None, repo: m.Repo) -> bool:
    """Only the App's installation (or an admin, when the repository allows it)."""
    if principal is None:
        return False
    if principal.installation is not None:
        return repo.id in principal.installation.repository_ids
    if principal.user is not None and repo.admins_may_push_protected:
        return state.permission(repo, principal.user) >= m.Permission.ADMIN
    return False


def is_protected(repo: m.Repo, ref: str) -> bool:
    """Whether `ref` (refs/heads/x or x) names a protected branch of `repo`."""
    branch = ref.removeprefix("refs/heads/")
    return branch in repo.protected_branches
