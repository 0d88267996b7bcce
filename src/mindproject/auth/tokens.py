"""Bearer tokens: HS256 JWTs signed by the key ring, verified statelessly on every replica.

Claims: `role` (device, operator, admin), `sub` (the device id for device tokens), `iat`,
optional `exp`, and a random `jti`. The header's `kid` names the key that signed it, so old and
new keys both verify during a rotation. Only HS256 is accepted: `alg: none` and every other
algorithm are refused before any key is touched.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from mindproject.auth.keys import KeyRing
from mindproject.errors import InvalidDeviceId, Unauthorized
from mindproject.identifiers import check_device_id

ALGORITHM = "HS256"
CLOCK_SKEW_SECONDS = 30
_CACHE_SIZE = 10_000


class Role(enum.StrEnum):
    DEVICE = "device"
    OPERATOR = "operator"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a device (with its id), an operator or an admin."""

    role: Role
    device_id: str | None = None
    issued_at: int = 0
    expires_at: int | None = None


OPEN_MODE = Principal(Role.ADMIN)


def issue_token(
    keys: KeyRing, role: Role, *, device_id: str | None = None, ttl_seconds: int | None = None
) -> str:
    if (role is Role.DEVICE) != (device_id is not None):
        raise ValueError("device tokens name exactly one device; other roles name none")
    now = int(time.time())
    claims: dict[str, object] = {"role": role.value, "iat": now, "jti": secrets.token_hex(8)}
    if device_id is not None:
        claims["sub"] = check_device_id(device_id)
    if ttl_seconds is not None:
        claims["exp"] = now + ttl_seconds
    return jwt.encode(
        claims, keys.signing_key, algorithm=ALGORITHM, headers={"kid": keys.signing_kid}
    )


class TokenVerifier:
    """Verifies tokens, remembering recent good ones (devices resend the same token)."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def verify(self, token: str) -> Principal:
        principal = self._cache.get(token)
        if principal is None:
            principal = self._decode(token)
            self._cache[token] = principal
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        if (
            principal.expires_at is not None
            and time.time() > principal.expires_at + CLOCK_SKEW_SECONDS
        ):
            self._cache.pop(token, None)
            raise Unauthorized("token expired")
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"only {ALGORITHM} tokens are accepted")
        key = self._keys.keys.get(str(header.get("kid")))
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iat", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("token does not verify") from None
        try:
            role = Role(claims["role"])
            device_id = check_device_id(str(claims["sub"])) if role is Role.DEVICE else None
        except (ValueError, KeyError, InvalidDeviceId):
            raise Unauthorized("token claims are not valid") from None
        expires = claims.get("exp")
        return Principal(role, device_id, int(claims["iat"]), int(expires) if expires else None)
