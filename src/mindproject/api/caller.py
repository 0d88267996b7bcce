"""Who is calling, and whether they may: every route but the public ones starts here."""

from __future__ import annotations

from starlette.requests import Request

from mindproject.auth.access import Action, require
from mindproject.auth.tokens import Principal, Role


async def identify(request: Request) -> Principal:
    """Authenticate the caller (401), whatever their role."""
    state = request.app.state
    principal: Principal = await state.authenticator.authenticate(
        request.headers.get("authorization"), request.client.host if request.client else None
    )
    return principal


async def authorize(request: Request, action: Action, device: str | None = None) -> Principal:
    """Authenticate the caller (401), check the role may do this here (403) and, for device
    tokens, the device's request rate (429)."""
    state = request.app.state
    principal = await identify(request)
    require(principal, action, device)
    if principal.role is Role.DEVICE and principal.device_id is not None:
        state.rate_limiter.check(principal.device_id)
    return principal
