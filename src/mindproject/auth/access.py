"""Who may do what. Devices: their own device only; operators: read everything; admins: all."""

from __future__ import annotations

import enum

from mindproject.auth.tokens import Principal, Role
from mindproject.errors import Forbidden


class Action(enum.Enum):
    UPLOAD = "upload"
    READ = "read"  # a device's latest upload, history, one version
    LIST_DEVICES = "list devices"
    DELETE = "delete"
    MANAGE_REVOCATIONS = "manage revocations"


_ALLOWED: dict[Role, set[Action]] = {
    Role.DEVICE: {Action.UPLOAD, Action.READ},
    Role.OPERATOR: {Action.READ, Action.LIST_DEVICES},
    Role.ADMIN: set(Action),
}


def require(principal: Principal, action: Action, device_id: str | None = None) -> None:
    if action not in _ALLOWED[principal.role]:
        raise Forbidden(f"a {principal.role} token may not {action.value}")
    if principal.role is Role.DEVICE and device_id != principal.device_id:
        raise Forbidden("a device token may only touch its own device")
