"""Signing and verifying tokens, key rotation, expiry."""

from __future__ import annotations

import time

import jwt
import pytest

from mindproject.auth.keys import KeyRing
from mindproject.auth.tokens import Principal, Role, TokenVerifier, issue_token
from mindproject.errors import Unauthorized

OLD = "old-signing-key-Qm7vT2xK9pL4wR8nZ3cF6hJ1bY5sD0gE"
NEW = "new-signing-key-Rb6yN1mW5qA9xE3tU7iO2pL8kJ4hG0fD"


def test_round_trip_per_role() -> None:
    keys = KeyRing.of(NEW, [], "test")
    verifier = TokenVerifier(keys)
    device = verifier.verify(issue_token(keys, Role.DEVICE, device_id="sensor-1"))
    assert device.role is Role.DEVICE and device.device_id == "sensor-1"
    operator = verifier.verify(issue_token(keys, Role.OPERATOR))
    assert operator == Principal(Role.OPERATOR, None, operator.issued_at, None)


def test_rotation_old_tokens_verify_while_the_old_key_is_kept() -> None:
    before = KeyRing.of(OLD, [], "test")
    token = issue_token(before, Role.ADMIN)
    during = KeyRing.of(NEW, [OLD], "test")
    assert during.signing_kid != before.signing_kid
    assert TokenVerifier(during).verify(token).role is Role.ADMIN
    new_token = issue_token(during, Role.ADMIN)
    assert jwt.get_unverified_header(new_token)["kid"] == during.signing_kid
    after = KeyRing.of(NEW, [], "test")
    with pytest.raises(Unauthorized, match="unknown key"):
        TokenVerifier(after).verify(token)
    assert TokenVerifier(after).verify(new_token).role is Role.ADMIN


def test_expired_tokens_fail_even_when_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyRing.of(NEW, [], "test")
    verifier = TokenVerifier(keys)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(issue_token(keys, Role.OPERATOR, ttl_seconds=-120))
    short = issue_token(keys, Role.OPERATOR, ttl_seconds=1)
    assert verifier.verify(short).expires_at is not None
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(short)


def test_forged_tokens_fail() -> None:
    keys = KeyRing.of(NEW, [], "test")
    verifier = TokenVerifier(keys)
    good = issue_token(keys, Role.DEVICE, device_id="d")
    header, _payload, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"role":"admin","iat":1}').decode()
    for token in (
        f"{header}.{forged_payload}.{signature}",
        jwt.encode(
            {"role": "admin", "iat": 1},
            "x" * 40,
            algorithm="HS256",
            headers={"kid": keys.signing_kid},
        ),
        jwt.encode({"role": "admin", "iat": 1}, None, algorithm="none"),
        "not.a.token",
        "",
    ):
        with pytest.raises(Unauthorized):
            verifier.verify(token)


def test_device_tokens_must_name_one_valid_device() -> None:
    keys = KeyRing.of(NEW, [], "test")
    with pytest.raises(ValueError):
        issue_token(keys, Role.DEVICE)
    with pytest.raises(ValueError):
        issue_token(keys, Role.ADMIN, device_id="d")
    bad = jwt.encode(
        {"role": "device", "sub": "../x", "iat": 1},
        NEW,
        algorithm="HS256",
        headers={"kid": keys.signing_kid},
    )
    with pytest.raises(Unauthorized):
        TokenVerifier(keys).verify(bad)
