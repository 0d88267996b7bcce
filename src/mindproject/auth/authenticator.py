"""From an `Authorization` header to a Principal: verify the bearer token, check revocations."""

from __future__ import annotations

from mindproject.auth.revocations import Revocations
from mindproject.auth.tokens import OPEN_MODE, Principal, Role, TokenVerifier
from mindproject.errors import Unauthorized


class Authenticator:
    """`verifier` None means open mode (MINDPROJECT_AUTH=off): everyone is an admin."""

    def __init__(self, verifier: TokenVerifier | None, revocations: Revocations) -> None:
        self.verifier = verifier
        self.revocations = revocations

    async def authenticate(self, authorization: str | None) -> Principal:
        if self.verifier is None:
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
