"""The role matrix."""

from __future__ import annotations

import pytest

from mindproject.auth.access import Action, require
from mindproject.auth.tokens import Principal, Role
from mindproject.errors import Forbidden

DEVICE = Principal(Role.DEVICE, "sensor-1")
OPERATOR = Principal(Role.OPERATOR)
ADMIN = Principal(Role.ADMIN)


def allowed(principal: Principal, action: Action, device: str | None) -> bool:
    """The rules, written out independently of the code under test."""
    if principal.role is Role.ADMIN:
        return True
    if principal.role is Role.OPERATOR:
        return action in (Action.READ, Action.LIST_DEVICES)
    return action in (Action.UPLOAD, Action.READ) and device == principal.device_id


@pytest.mark.parametrize("principal", [DEVICE, OPERATOR, ADMIN], ids=lambda p: p.role.value)
@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name)
@pytest.mark.parametrize("device", ["sensor-1", "other", None])
def test_matrix(principal: Principal, action: Action, device: str | None) -> None:
    if allowed(principal, action, device):
        require(principal, action, device)
    else:
        with pytest.raises(Forbidden):
            require(principal, action, device)
