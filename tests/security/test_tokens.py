"""Authentication: forged, expired, alg-none, wrong-audience and confused-algorithm tokens are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from roost.auth import TokenAuthority
from roost.config import Settings
from roost.node import serve
from roost.protocol.codes import Code
from roost.protocol.errors import AuthError

SECRET = "s3cret-" * 6


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _rsa() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_a_valid_hs256_token_names_its_user() -> None:
    """[R-AUTH-1] An HS256 token's ``sub`` is the user, and it carries an expiry."""
    authority = TokenAuthority(SECRET)
    user, expires = authority.verify(authority.issue("alice"))
    assert user == "alice" and expires > time.time()


def test_the_admin_role_comes_only_from_a_signed_roles_claim(capsys: pytest.CaptureFixture[str]) -> None:
    authority = TokenAuthority(SECRET)
    assert not authority.identify(authority.issue("alice")).admin
    assert not authority.identify(authority.issue("alice", roles="admin")).admin  # a list, not a string
    assert not authority.identify(authority.issue("alice", roles=["moderator"])).admin
    ops = authority.identify(authority.issue("ops", roles=["admin"]))
    assert (ops.user, ops.admin) == ("ops", True)
    from roost.cli import main

    main(["token", "ops", "--admin", "--secret", SECRET])
    identity = authority.identify(capsys.readouterr().out.strip())
    assert identity.user == "ops" and identity.admin
    main(["token", "alice", "--secret", SECRET])
    assert not authority.identify(capsys.readouterr().out.strip()).admin


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: TokenAuthority(SECRET[::-1]).issue("alice"), id="forged-signature"),
        pytest.param(lambda: TokenAuthority(SECRET).issue("alice", ttl_s=-10), id="expired"),
        pytest.param(
            lambda: (
                _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "alice", "exp": 2**40, "iss": "roost"}) + "."
            ),
            id="alg-none",
        ),
        pytest.param(lambda: jwt.encode({"sub": "alice", "iss": "roost"}, SECRET, "HS256"), id="no-exp"),
        pytest.param(lambda: jwt.encode({"sub": "alice", "exp": 2**40, "iss": "evil"}, SECRET, "HS256"), id="issuer"),
        pytest.param(lambda: jwt.encode({"sub": "../x", "exp": 2**40, "iss": "roost"}, SECRET, "HS256"), id="bad-sub"),
        pytest.param(lambda: "not.a.token", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(make: object) -> None:
    """[R-AUTH-1] A forged signature, an expired token, no ``exp``, another issuer, ``alg: none`` or garbage:
    refused."""
    with pytest.raises(AuthError) as caught:
        TokenAuthority(SECRET).verify(make())  # type: ignore[operator]
    assert caught.value.code == Code.UNAUTHORIZED


def test_the_audience_is_enforced_when_configured() -> None:
    server = TokenAuthority(SECRET, audience="roost-chat")
    assert server.verify(server.issue("alice"))[0] == "alice"
    other = TokenAuthority(SECRET, audience="billing").issue("alice")
    with pytest.raises(AuthError):
        server.verify(other)
    with pytest.raises(AuthError):
        server.verify(TokenAuthority(SECRET).issue("alice"))  # no aud at all


def test_rs256_with_a_public_key_and_no_algorithm_confusion() -> None:
    """[R-SEC-1] Only the configured key's algorithms pass: an HS256 token "signed" with the RSA public key is
    refused."""
    private, public = _rsa()
    issuer = TokenAuthority(private_key=private, public_key=public)
    server = TokenAuthority(public_key=public)
    assert server.verify(issuer.issue("alice"))[0] == "alice"
    # An HS256 token "signed" with the public key as the secret must not pass.
    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64({"sub": "alice", "exp": 2**40, "iss": "roost"})
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        server.verify(confused)
    _, other_public = _rsa()
    with pytest.raises(AuthError):
        TokenAuthority(public_key=other_public).verify(issuer.issue("alice"))


def test_es256_through_a_jwks_picks_the_key_by_kid() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    server = TokenAuthority(jwks={"keys": [jwk]})
    good = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60, "iss": "roost"}, key, "ES256", headers={"kid": "k1"}
    )
    assert server.verify(good)[0] == "alice"
    unknown = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60, "iss": "roost"}, key, "ES256", headers={"kid": "k2"}
    )
    with pytest.raises(AuthError):
        server.verify(unknown)


async def test_the_server_refuses_bad_tokens_and_stays_healthy(tmp_path: Path) -> None:
    _, public = _rsa()
    (tmp_path / "pub.pem").write_text(public)
    settings = Settings(port=0, data_dir=str(tmp_path / "d"), secret=SECRET, audience="roost-chat", dev_login=False)
    async with serve(settings) as node:
        bad = [
            TokenAuthority("forged-secret-of-enough-length-for-hs256!", audience="roost-chat").issue("alice"),
            TokenAuthority(SECRET, audience="roost-chat").issue("alice", ttl_s=-5),
            _b64({"alg": "none"}) + "." + _b64({"sub": "alice", "exp": 2**40, "aud": "roost-chat"}) + ".",
            TokenAuthority(SECRET, audience="other").issue("alice"),
        ]
        async with aiohttp.ClientSession() as http:
            for token in bad:
                async with http.ws_connect(node.ws_url) as ws:
                    await ws.send_json({"type": "auth", "token": token})
                    error = await ws.receive_json(timeout=5)
                    assert error["code"] == Code.UNAUTHORIZED
                async with http.get(node.url + "/api/rooms", headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 401
            async with http.post(node.url + "/api/login", json={"name": "mallory"}) as r:
                assert r.status == 403  # development login is off once a secret is configured
            good = node.tokens.issue("alice")
            async with http.get(node.url + "/api/rooms", headers={"Authorization": f"Bearer {good}"}) as r:
                assert r.status == 200
        assert await node.service.public_rooms() == []  # nothing was created or stored
