"""The fleet page's files, in-process: served from the package, under the page's strict
Content-Security-Policy, with nothing inline and no data rendered as HTML."""

from __future__ import annotations

import re

from mindproject.api.web import WEB
from tests.helpers import AppServer


def test_page_and_assets_are_served_with_the_page_policy(server: AppServer) -> None:
    client = server.client(None)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe" not in csp
    sources = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
    assert set(sources) >= {"/web/app.js", "/web/app.css"}
    for source in ("/web/app.js", "/web/app.css"):
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert asset.headers["content-security-policy"] == csp
    assert client.get("/web/index.html").status_code == 404  # only the files the page uses
    # The API keeps its own policy.
    assert "default-src 'self'" in client.get("/healthz").headers["content-security-policy"]


def test_nothing_inline_and_no_html_from_data() -> None:
    html = (WEB / "index.html").read_text()
    assert "<script>" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert " style=" not in html
    script = (WEB / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "localStorage" not in script and "document.cookie" not in script
