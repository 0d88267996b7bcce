"""From an `Authorization` header to a Principal: verify the bearer token, check revocations."""

from __future__ import annotations

import ipaddress

from mindproject.auth.revocations import Revocations
from mindproject.auth.tokens import OPEN_MODE, Principal, Role, TokenVerifier
from mindproject.errors import Forbidden, Unauthorized


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """`verifier` None means open mode (MINDPROJECT_AUTH=off): every loopback caller is an admin.

    Open mode refuses callers from other addresses, whatever address the server was told to
    listen on: settings only see MINDPROJECT_HOST, not a `uvicorn --host` given by hand, and the
    lifespan runs before the server binds its sockets, so the peer is checked on each request.
    MINDPROJECT_ALLOW_OPEN_NONLOCAL=true lifts this, as it lifts the start-up check.
    """

    def __init__(
        self,
        verifier: TokenVerifier | None,
        revocations: Revocations,
        *,
        allow_open_nonlocal: bool = False,
    ) -> None:
        self.verifier = verifier
        self.revocations = revocations
        self.allow_open_nonlocal = allow_open_nonlocal

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Principal:
        if self.verifier is None:
            if not self.allow_open_nonlocal and not is_loopback(client_host):
                raise Forbidden(
                    "auth is off (MINDPROJECT_AUTH=off): only clients on this machine are served"
                )
            return OPEN_MODE
        if not authorization:
            raise Unauthorized("send Authorization: Bearer <token>", error=None)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send Authorization: Bearer <token>", error="invalid_request")
        principal = self.verifier.verify(token.strip())
        if principal.role is Role.DEVICE and principal.device_id is not None:
            revoked_at = await self.revocations.revoked_at(principal.device_id)
            if revoked_at is not None and principal.issued_at <= revoked_at:
                raise Unauthorized("token revoked")
        return principal
