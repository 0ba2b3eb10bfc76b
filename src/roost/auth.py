"""Tokens: JWT bearer tokens. ``sub`` is the user; ``exp`` is required and enforced, also on
long-lived connections (the gateway closes a connection when its token expires). A ``roles`` claim
holding ``"admin"`` makes the user a server administrator (the admin HTTP API); nothing else reads it.
``iat`` dates the token against its user's revocation (revocation.py): a token without one is void once its
user has been revoked.

Keys, by what the server is given:

* a shared secret: HS256, and the server can issue tokens (``roost token``, development login);
* a public key (PEM, RSA or EC): RS256 / ES256 tokens from your identity provider;
* a JWKS file: the key is picked by the token's ``kid``.

Only the algorithms that fit the configured keys are accepted, so ``alg: none`` and algorithm
confusion (an HS256 token "signed" with a public key) are refused. ``iss`` and ``aud`` are checked
when configured. In the embedded default the secret is generated into the data directory, and
``POST /api/login`` hands out a token for any name: development mode, clearly insecure, and off as
soon as a secret or a key is configured.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, NamedTuple

import jwt
from jwt import PyJWKSet

from . import durable
from .protocol.codes import Code
from .protocol.errors import AuthError
from .protocol.types import valid_user

__all__ = ["ADMIN_ROLE", "Identity", "TokenAuthority", "load_or_create_secret"]

ADMIN_ROLE = "admin"


class Identity(NamedTuple):
    user: str
    expires_at: float
    admin: bool
    """The token's ``roles`` claim holds ``"admin"``."""
    issued_at: float | None = None
    """The token's ``iat``; None when it has none (void once its user has a revocation: revocation.py)."""
    scopes: frozenset[str] | None = None
    """An API key's scopes (apikeys.py); None for a user's token, which may do everything its user may."""
    key: str | None = None
    """The API key's id, or None for a token."""


_ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


class TokenAuthority:
    def __init__(
        self,
        secret: str | None = None,
        *,
        public_key: str | None = None,
        jwks: dict[str, Any] | None = None,
        private_key: str | None = None,
        issuer: str | None = "roost",
        audience: str | None = None,
        ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        if secret is None and public_key is None and jwks is None:
            raise ValueError("a secret, a public key or a JWKS is needed to verify tokens")
        self._secret = secret
        self._public_key = public_key
        self._jwks = PyJWKSet.from_dict(jwks) if jwks is not None else None
        self._private_key = private_key
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    @property
    def can_issue(self) -> bool:
        return self._secret is not None or self._private_key is not None

    def issue(self, user: str, ttl_s: int | None = None, **claims: Any) -> str:
        if not valid_user(user):
            raise AuthError(
                "user names are 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)", Code.BAD_FRAME
            )
        now = int(time.time())
        payload: dict[str, Any] = {"sub": user, "iat": now, "exp": now + (ttl_s or self.ttl_s), **claims}
        if self.issuer:
            payload["iss"] = self.issuer
        if self.audience:
            payload["aud"] = self.audience
        if self._secret is not None:
            return jwt.encode(payload, self._secret, algorithm="HS256")
        if self._private_key is not None:
            algorithm = "ES256" if "EC PRIVATE" in self._private_key else "RS256"
            return jwt.encode(payload, self._private_key, algorithm=algorithm)
        raise AuthError("this server verifies tokens but cannot issue them", Code.FORBIDDEN)

    def verify(self, token: str) -> tuple[str, float]:
        """Return ``(user, expires_at)`` or raise ``AuthError(UNAUTHORIZED)``."""
        identity = self.identify(token)
        return identity.user, identity.expires_at

    def identify(self, token: str) -> Identity:
        """Verify ``token`` and return who it names, until when, and whether it carries the admin role."""
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["sub", "exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", Code.UNAUTHORIZED) from None
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise AuthError(f"invalid token: {exc}", Code.UNAUTHORIZED) from None
        user = claims.get("sub")
        if not isinstance(user, str) or not valid_user(user):
            raise AuthError("invalid token subject", Code.UNAUTHORIZED)
        roles = claims.get("roles")
        admin = isinstance(roles, list) and ADMIN_ROLE in roles
        iat = claims.get("iat")
        issued_at = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None
        return Identity(user, float(claims["exp"]), admin, issued_at)

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        alg = header.get("alg")
        if alg == "HS256" and self._secret is not None:
            return self._secret, ["HS256"]
        if alg in _ASYMMETRIC:
            if self._jwks is not None:
                kid = header.get("kid")
                for jwk in self._jwks.keys:
                    if kid is None or jwk.key_id == kid:
                        return jwk.key, [alg]
                raise jwt.InvalidKeyError(f"no key with kid {kid!r}")
            if self._public_key is not None:
                return self._public_key, [alg]
        raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} is not accepted here")


def load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    durable.make_dirs(data_dir)
    secret = secrets.token_urlsafe(32)
    # Durably: a secret lost to a power cut would be replaced by a new one, voiding every token issued.
    durable.write_file(path, secret.encode(), 0o600)
    return secret


def load_jwks(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data
