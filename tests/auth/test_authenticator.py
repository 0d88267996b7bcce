"""Open mode (MINDPROJECT_AUTH=off) serves loopback callers only, whatever address is bound."""

from __future__ import annotations

import httpx
import pytest

from mindproject.app import create_app
from mindproject.auth.authenticator import is_loopback
from mindproject.config import Settings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.7", False),
        ("203.0.113.9", False),
        ("::ffff:203.0.113.9", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("client", "allow_nonlocal", "status"),
    [
        ("127.0.0.1", False, 200),
        ("203.0.113.9", False, 403),
        ("203.0.113.9", True, 200),
    ],
)
async def test_open_mode_refuses_callers_from_other_addresses(
    client: str, allow_nonlocal: bool, status: int
) -> None:
    """`uvicorn --factory mindproject.app:create_app --host 0.0.0.0` with auth off used to serve
    everyone: the settings only saw MINDPROJECT_HOST. The peer address is what counts now.
    In-process (httpx's ASGITransport sets the peer address): no second network interface may
    be used here to make a real non-loopback connection."""
    settings = Settings(storage="memory://", auth="off", allow_open_nonlocal=allow_nonlocal)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=(client, 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5000") as http,
    ):
        response = await http.get("/api/devices/")
        assert response.status_code == status, response.text
        if status == 403:
            assert response.json()["error"]["code"] == "forbidden"
            assert "MINDPROJECT_AUTH=off" in response.json()["error"]["message"]
