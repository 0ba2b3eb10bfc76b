"""Who a bearer credential is: a user's token or an API key, then the revocation check. One place for both
the HTTP API and the WebSocket, so the two cannot disagree on what a revoked or unknown credential gets."""

from __future__ import annotations

from ..apikeys import ApiKeys, is_api_key
from ..auth import Identity, TokenAuthority
from ..protocol.codes import Code
from ..protocol.errors import AuthError
from ..revocation import Revocations

__all__ = ["identify"]


async def identify(
    credential: str, tokens: TokenAuthority, keys: ApiKeys | None, revocations: Revocations | None
) -> Identity:
    """4401 if invalid, expired or revoked (the key record and the revocations are read, no cache)."""
    if is_api_key(credential):
        if keys is None:
            raise AuthError("this server does not accept API keys", Code.UNAUTHORIZED)
        identity = await keys.identify(credential)
    else:
        identity = tokens.identify(credential)
    if revocations is not None:
        await revocations.check(identity)
    return identity
