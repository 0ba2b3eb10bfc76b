"""Tokens: HS256 JWTs. ``sub`` is the user; ``exp`` is enforced, also on long-lived connections.

In the embedded default the secret is generated once into the data directory, and ``POST /api/login``
hands out a token for any name (development mode, clearly insecure). A configured secret turns
development login off unless asked for.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import jwt

from .protocol.codes import Code
from .protocol.errors import AuthError
from .protocol.types import valid_user

__all__ = ["TokenAuthority", "load_or_create_secret"]

_ALGORITHMS = ["HS256"]


class TokenAuthority:
    def __init__(self, secret: str, issuer: str = "roost", ttl_s: int = 7 * 24 * 3600) -> None:
        self._secret = secret
        self.issuer = issuer
        self.ttl_s = ttl_s

    def issue(self, user: str, ttl_s: int | None = None) -> str:
        if not valid_user(user):
            raise AuthError("user names are 1-64 characters of A-Z a-z 0-9 _ . @ -", Code.BAD_FRAME)
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": now + (ttl_s or self.ttl_s), "iss": self.issuer}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> tuple[str, float]:
        """Return ``(user, expires_at)`` or raise ``AuthError(UNAUTHORIZED)``."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=_ALGORITHMS,
                issuer=self.issuer,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", Code.UNAUTHORIZED) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}", Code.UNAUTHORIZED) from None
        user = claims.get("sub")
        if not isinstance(user, str) or not valid_user(user):
            raise AuthError("invalid token subject", Code.UNAUTHORIZED)
        return user, float(claims["exp"])


def load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
