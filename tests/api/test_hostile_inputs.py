"""Hostile inputs against a real server: every row is refused with the right status and the one
JSON error shape, and leaves the storage exactly as it was.

The requests are written byte by byte on a raw socket, because an HTTP client would normalize
them (resolve `..`, re-encode paths, fix Content-Length). The server runs on the file backend
with token auth on; one device, `victim`, holds one upload, and after every row the device list,
the victim's uploads and the files under `<data>/blobs` and `<data>/tmp` must be unchanged
(the file backend may keep small uploads in its index: the API listings cover those).

Some requests never reach the application: the HTTP parser (httptools) refuses them, and the
connection protocol (mindproject.http_protocol) answers `400` with the JSON error shape and code
`malformed_request` (no security headers: no app ran). Those rows say `PARSER` as their code: raw
non-ASCII or control bytes in the request line, a negative or repeated Content-Length,
Content-Length together with Transfer-Encoding (request smuggling), and pipelined garbage.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest

from tests.helpers import (
    TEST_SECRET_KEY,
    AppServer,
    RunningServer,
    assert_error,
    make_token,
    run_server,
)

PARSER = "<httptools>"  # answered by the HTTP parser, not the application (see the docstring)
VICTIM = "victim"
VICTIM_DATA = b"the victim's telemetry\n"
OTHER_KEY = "another-signing-key-0c4e8a2f6b1d9e3c7a5f"
TEST_KID = hashlib.sha256(TEST_SECRET_KEY.encode()).hexdigest()[:12]


# --- raw HTTP ----------------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def http_request(
    method: str,
    path: bytes | str,
    *,
    token: str | None = None,
    headers: Sequence[tuple[str, bytes | str]] | None = None,
    body: bytes = b"",
    content_length: int | bool | None = True,
) -> bytes:
    """One request, exactly as given. `content_length=True` declares the body's real length,
    an int declares that (lying) length, None or False sends none."""
    target = path if isinstance(path, bytes) else path.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if token is not None:
        lines.append(b"Authorization: Bearer " + token.encode())
    for name, value in headers or []:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if content_length is True:
        lines.append(b"Content-Length: %d" % len(body))
    elif isinstance(content_length, int) and content_length is not False:
        lines.append(b"Content-Length: %d" % content_length)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send_raw(url: str, request: bytes, *, half_close: bool = False, timeout: float = 20) -> bytes:
    """Send `request`, then read until the server closes. `half_close` shuts our sending side
    right after, as a client that gives up mid-body does."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        # The server may answer and close before reading everything: then read the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return bytes(received)


def parse_response(raw: bytes) -> httpx.Response:
    """The first HTTP response in `raw`, as an httpx.Response (so `assert_error` applies)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response: {raw[:300]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = [tuple(line.split(":", 1)) for line in header_lines]
    pairs = [(name.strip(), value.strip()) for name, value in headers]
    length = next((int(v) for k, v in pairs if k.lower() == "content-length"), len(rest))
    return httpx.Response(status, headers=pairs, content=rest[:length])


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    if code == PARSER:
        # The parser refused it before the app saw the request; the protocol answered.
        assert status == 400
        assert_error(response, 400, "malformed_request")
        assert response.headers["connection"] == "close"
        return
    assert_error(response, status, code)


# --- the server and what it stores -------------------------------------------------------------
@dataclass
class Target:
    server: RunningServer
    data: Path
    victim_version: str
    baseline_blobs: list[str] = field(default_factory=list)

    def stored_files(self) -> tuple[list[str], list[str]]:
        blobs = sorted(
            str(p.relative_to(self.data)) for p in (self.data / "blobs").rglob("*") if p.is_file()
        )
        tmp = sorted(str(p.relative_to(self.data)) for p in (self.data / "tmp").rglob("*"))
        return blobs, tmp

    def assert_unchanged(self) -> None:
        """Nothing stored, nothing deleted: the state the module fixture left."""
        deadline = time.monotonic() + 5
        while True:  # a disconnect is noticed by the server a moment after the client leaves
            blobs, tmp = self.stored_files()
            if (blobs == self.baseline_blobs and not tmp) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert tmp == [], f"temporary files left behind: {tmp}"
        assert blobs == self.baseline_blobs
        with self.server.client() as admin:
            devices = admin.get("/api/devices/")
            assert devices.status_code == 200, devices.text
            assert devices.json()["TelemetryDataDownloads"] == [VICTIM]
            uploads = admin.get(f"/api/devices/{VICTIM}/uploads").json()["uploads"]
            assert [u["version"] for u in uploads] == [self.victim_version]
            latest = admin.get(f"/api/devices/{VICTIM}", params={"encoding": "raw"})
            assert latest.content == VICTIM_DATA

    def restore(self) -> None:
        """Undo whatever a failed row stored or deleted, so that the next row starts clean."""
        for leftover in (self.data / "tmp").rglob("*"):
            if leftover.is_file():
                leftover.unlink()
        with self.server.client() as admin:
            for device in admin.get("/api/devices/").json()["TelemetryDataDownloads"]:
                if device != VICTIM:
                    admin.delete(f"/api/devices/{device}")
            history = admin.get(f"/api/devices/{VICTIM}/uploads")
            versions = [u["version"] for u in history.json().get("uploads", [])]
            if self.victim_version not in versions:
                admin.delete(f"/api/devices/{VICTIM}")
                seeded = admin.put(f"/api/devices/{VICTIM}", files={"file": ("v", VICTIM_DATA)})
                self.victim_version = seeded.json()["version"]
                self.baseline_blobs = self.stored_files()[0]
            for version in versions:
                if version != self.victim_version:
                    admin.delete(f"/api/devices/{VICTIM}/uploads/{version}")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp_path = tmp_path_factory.mktemp("hostile")
    data = tmp_path / "data"
    with run_server(tmp_path, f"file://{data}") as server:
        with server.client() as admin:
            stored = admin.put(f"/api/devices/{VICTIM}", files={"file": ("v.bin", VICTIM_DATA)})
            assert stored.status_code == 200, stored.text
        state = Target(server, data, stored.json()["version"])
        # One blob file, or none where small uploads live in the index: whichever, it must stay.
        state.baseline_blobs = state.stored_files()[0]
        assert len(state.baseline_blobs) <= 1
        yield state


# --- tokens ------------------------------------------------------------------------------------
ADMIN = make_token("admin")
OPERATOR = make_token("operator")
VICTIM_TOKEN = make_token("device", VICTIM)
INTRUDER = make_token("device", "intruder")


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def tampered(token: str, **changes: object) -> str:
    """Same header and signature, payload changed."""
    header, _, signature = token.split(".")
    payload = b64url(json.dumps({**_claims(token), **changes}).encode())
    return f"{header}.{payload}.{signature}"


def unsigned(header: dict[str, object], claims: dict[str, object], signature: bytes = b"") -> str:
    parts = [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode())]
    return ".".join([*parts, b64url(signature)])


def hs(alg: str, key: str, header: dict[str, object], claims: dict[str, object]) -> str:
    """HMAC-signed by hand, so any header (alg, kid) can be claimed."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    full_header = {"alg": alg, "typ": "JWT", **header}
    signing_input = ".".join(
        [b64url(json.dumps(full_header).encode()), b64url(json.dumps(claims).encode())]
    )
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


NOW = int(time.time())
ADMIN_CLAIMS: dict[str, object] = {"role": "admin", "iat": NOW, "jti": "0123456789abcdef"}
EXPIRED_ADMIN = make_token("admin", ttl=-3600)
EXPIRED_BY_HAND = jwt.encode(
    {**ADMIN_CLAIMS, "iat": NOW - 7200, "exp": NOW - 3600},
    TEST_SECRET_KEY,
    algorithm="HS256",
    headers={"kid": TEST_KID},
)
OTHER_KEY_OWN_KID = jwt.encode(
    ADMIN_CLAIMS, OTHER_KEY, algorithm="HS256", headers={"kid": hashlib.sha256(b"x").hexdigest()}
)
OTHER_KEY_OUR_KID = hs("HS256", OTHER_KEY, {"kid": TEST_KID}, ADMIN_CLAIMS)
ALG_NONE = unsigned({"alg": "none", "typ": "JWT"}, ADMIN_CLAIMS)
ALG_NONE_WITH_KID = unsigned({"alg": "none", "typ": "JWT", "kid": TEST_KID}, ADMIN_CLAIMS)
ALG_NONE_CAPS = unsigned({"alg": "None", "typ": "JWT", "kid": TEST_KID}, ADMIN_CLAIMS)
HS512_RIGHT_KEY = hs("HS512", TEST_SECRET_KEY, {"kid": TEST_KID}, ADMIN_CLAIMS)
# RS256 with the HMAC key as "public key": the classic algorithm-confusion forgery.
RS256_CONFUSION = hs("HS256", TEST_SECRET_KEY, {"kid": TEST_KID}, ADMIN_CLAIMS).replace(
    b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": TEST_KID}).encode()),
    b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": TEST_KID}).encode()),
)
UNKNOWN_KID = hs("HS256", TEST_SECRET_KEY, {"kid": "000000000000"}, ADMIN_CLAIMS)
NO_KID = hs("HS256", TEST_SECRET_KEY, {}, ADMIN_CLAIMS)
KID_TRAVERSAL = hs("HS256", TEST_SECRET_KEY, {"kid": "../../secret.key"}, ADMIN_CLAIMS)


# --- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    id: str
    request: bytes
    status: int
    code: str
    # Extra headers the answer must carry (name -> exact value).
    headers: tuple[tuple[str, str], ...] = ()
    half_close: bool = False


def put(path: bytes | str, body: bytes = b"abc", **kwargs: object) -> bytes:
    kwargs.setdefault("token", ADMIN)
    kwargs.setdefault("headers", [("Content-Type", "application/octet-stream")])
    return http_request("PUT", path, body=body, **kwargs)  # type: ignore[arg-type]


def form_put(body: bytes, content_type: str = "multipart/form-data; boundary=XyZ", **kw: object):
    return put(f"/api/devices/{VICTIM}", body, headers=[("Content-Type", content_type)], **kw)


def part(name: str | None, data: bytes, filename: str | None = "f.bin", boundary: str = "XyZ"):
    disposition = "form-data" + (f'; name="{name}"' if name is not None else "")
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    return (head + "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"


END = b"--XyZ--\r\n"

TRAVERSAL = [
    ("dotdot-raw", "/api/devices/../../etc/passwd", "invalid_device_id"),
    ("dotdot-alone", "/api/devices/..", "invalid_device_id"),
    ("dot-alone", "/api/devices/.", "invalid_device_id"),
    ("dotdot-lower-encoded", "/api/devices/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "invalid_device_id"),
    ("dotdot-upper-encoded", "/api/devices/%2E%2E/%2E%2E/etc/passwd", "invalid_device_id"),
    ("dotdot-slash-encoded", "/api/devices/..%2f..%2fetc%2fpasswd", "invalid_device_id"),
    ("dotdot-mixed", "/api/devices/.%2e/x", "invalid_device_id"),
    ("dotdot-only-encoded", "/api/devices/%2e%2e", "invalid_device_id"),
    ("double-encoded", "/api/devices/%252e%252e%252fetc%252fpasswd", "invalid_device_id"),
    ("double-encoded-slash", "/api/devices/a%252fb", "invalid_device_id"),
    ("backslash-raw", "/api/devices/..\\..\\etc\\passwd", "invalid_device_id"),
    ("backslash-encoded", "/api/devices/..%5c..%5cetc%5cpasswd", "invalid_device_id"),
    ("backslash-encoded-upper", "/api/devices/..%5C..%5Cwin.ini", "invalid_device_id"),
    ("overlong-utf8-dot", "/api/devices/%c0%ae%c0%ae%c0%afetc", "invalid_device_id"),
    ("overlong-utf8-slash", "/api/devices/a%c0%afb", "invalid_device_id"),
    ("unicode-one-dot-leader", "/api/devices/%e2%80%a4%e2%80%a4", "invalid_device_id"),
    ("unicode-fullwidth-dots", "/api/devices/%ef%bc%8e%ef%bc%8e%ef%bc%8fetc", "invalid_device_id"),
    ("unicode-division-slash", "/api/devices/..%e2%88%95etc", "invalid_device_id"),
    ("dot-segment-inside", "/api/devices/a/../victim", "invalid_device_id"),
    ("dot-segment-leading", "/api/devices/./victim", "invalid_device_id"),
    ("empty-segment", "/api/devices//victim", "invalid_device_id"),
    ("trailing-slash", "/api/devices/victim/", "invalid_device_id"),
    ("above-api", "/api/../api/devices/victim", "not_found"),
]
IDS = [
    ("id-129", "/api/devices/" + "a" * 129, "invalid_device_id"),
    ("id-4096", "/api/devices/" + "a" * 4096, "invalid_device_id"),
    ("id-e-acute", "/api/devices/caf%C3%A9", "invalid_device_id"),
    ("id-euro", "/api/devices/%E2%82%AC", "invalid_device_id"),
    ("id-emoji", "/api/devices/%F0%9F%98%80", "invalid_device_id"),
    ("id-cyrillic-a", "/api/devices/%D0%B0", "invalid_device_id"),
    ("id-invalid-utf8", "/api/devices/%ff%fe", "invalid_device_id"),
    ("id-lone-percent", "/api/devices/a%", "invalid_device_id"),
    ("id-bad-escape", "/api/devices/a%zz", "invalid_device_id"),
    ("id-nul", "/api/devices/a%00b", "invalid_device_id"),
    ("id-nul-then-traversal", "/api/devices/a%00/../../x", "invalid_device_id"),
    ("id-newline", "/api/devices/a%0ab", "invalid_device_id"),
    ("id-carriage-return", "/api/devices/a%0db", "invalid_device_id"),
    ("id-crlf-injection", "/api/devices/a%0d%0aX-Injected:%201", "invalid_device_id"),
    ("id-del", "/api/devices/a%7fb", "invalid_device_id"),
    ("id-tab", "/api/devices/a%09b", "invalid_device_id"),
    ("id-escape", "/api/devices/a%1bb", "invalid_device_id"),
    ("id-space", "/api/devices/a%20b", "invalid_device_id"),
    ("id-leading-dot", "/api/devices/.victim", "invalid_device_id"),
    # Raw bytes httptools refuses in a request target.
    ("id-raw-utf8", "/api/devices/caf\xc3\xa9", PARSER),
    ("id-raw-nul", "/api/devices/a\x00b", PARSER),
    ("id-raw-del", "/api/devices/a\x7fb", PARSER),
    ("id-raw-escape", "/api/devices/a\x1bb", PARSER),
]

ROWS: list[Row] = []
for name, path, code in TRAVERSAL + IDS:
    status = 404 if code == "not_found" else 400
    ROWS.append(Row(f"put-{name}", put(path), status, code))
    ROWS.append(Row(f"get-{name}", http_request("GET", path, token=ADMIN), status, code))
for name, path, code in TRAVERSAL[:9]:
    # The history routes take the same ids, and a version id is checked too.
    ROWS.append(
        Row(f"uploads-{name}", http_request("GET", path + "/uploads", token=ADMIN), 400, code)
    )
ROWS += [
    Row(
        "version-traversal",
        http_request("GET", f"/api/devices/{VICTIM}/uploads/..%2f..%2findex.sqlite3", token=ADMIN),
        400,
        "invalid_device_id",
    ),
    Row(
        "version-dotdot",
        http_request("GET", f"/api/devices/{VICTIM}/uploads/%2e%2e", token=ADMIN),
        400,
        "invalid_version_id",
    ),
    Row(
        "delete-version-garbage",
        http_request("DELETE", f"/api/devices/{VICTIM}/uploads/x%00", token=ADMIN),
        400,
        "invalid_version_id",
    ),
    Row(
        "delete-traversal",
        http_request("DELETE", "/api/devices/..%2fvictim", token=ADMIN),
        400,
        "invalid_device_id",
    ),
    Row(
        "list-prefix-traversal",
        http_request("GET", "/api/devices/?prefix=../", token=ADMIN),
        400,
        "invalid_device_id",
    ),
    Row(
        "list-cursor-traversal",
        http_request("GET", "/api/devices/?cursor=" + b64url(b"../../etc"), token=ADMIN),
        400,
        "invalid_parameter",
    ),
]

# Malformed and truncated multipart, all aimed at the victim: it must keep its one upload.
GOOD_FILE = part("file", b"payload-" * 8)
ROWS += [
    Row(
        "multipart-no-boundary",
        form_put(GOOD_FILE + END, "multipart/form-data"),
        400,
        "malformed_body",
    ),
    Row(
        "multipart-empty-boundary",
        form_put(GOOD_FILE + END, "multipart/form-data; boundary="),
        400,
        "malformed_body",
    ),
    Row(
        "multipart-boundary-201",
        form_put(GOOD_FILE + END, "multipart/form-data; boundary=" + "b" * 201),
        400,
        "malformed_body",
    ),
    Row(
        "multipart-wrong-boundary",
        form_put(GOOD_FILE + END, "multipart/form-data; boundary=Q"),
        400,
        "malformed_body",
    ),
    Row("multipart-missing-closing-delimiter", form_put(GOOD_FILE), 400, "malformed_body"),
    Row("multipart-truncated-in-data", form_put(GOOD_FILE[:-12]), 400, "malformed_body"),
    # Cut inside the part's headers, the form never names a `file` field: that is what it says.
    Row("multipart-truncated-in-headers", form_put(GOOD_FILE[:30]), 400, "missing_file_field"),
    Row("multipart-garbage", form_put(bytes(range(256)) * 4), 400, "malformed_body"),
    Row("multipart-json-body", form_put(b'{"file": "payload"}'), 400, "malformed_body"),
    Row("multipart-preamble-junk", form_put(b"junk\r\n" + GOOD_FILE + END), 400, "malformed_body"),
    Row("multipart-empty-body", form_put(b""), 400, "missing_file_field"),
    Row("multipart-only-closing", form_put(END), 400, "missing_file_field"),
    Row(
        "multipart-missing-file-field",
        form_put(part("document", b"x") + END),
        400,
        "missing_file_field",
    ),
    Row(
        "multipart-file-field-without-name",
        form_put(part(None, b"x") + END),
        400,
        "missing_file_field",
    ),
    Row("multipart-file-name-case", form_put(part("FILE", b"x") + END), 400, "missing_file_field"),
    Row(
        "multipart-duplicate-file",
        form_put(part("file", b"1") + part("file", b"2") + END),
        400,
        "bad_request",
    ),
    Row(
        "multipart-duplicate-file-second-truncated",
        form_put(part("file", b"1") + part("file", b"2")[:-6]),
        400,
        "malformed_body",
    ),
    Row(
        "multipart-other-field-over-64k",
        form_put(part("note", b"n" * (64 * 1024 + 1), None) + GOOD_FILE + END),
        400,
        "malformed_body",
    ),
    Row(
        "multipart-bad-digest",
        put(
            f"/api/devices/{VICTIM}",
            GOOD_FILE + END,
            headers=[
                ("Content-Type", "multipart/form-data; boundary=XyZ"),
                ("Content-Digest", "sha-256=:" + b64url(bytes(32)) + "=:"),
            ],
        ),
        400,
        "checksum_mismatch",
    ),
]

# Content types that cannot be a file: multipart envelopes other than form-data. (Any other
# type is taken as the raw file, as curl --data-binary and wget --body-file send it.)
for name, content_type in [
    ("multipart-mixed", "multipart/mixed; boundary=XyZ"),
    ("multipart-related", "multipart/related; boundary=XyZ"),
    ("multipart-alternative", "multipart/alternative; boundary=XyZ"),
]:
    ROWS.append(
        Row(
            f"content-type-{name}",
            form_put(GOOD_FILE + END, content_type),
            415,
            "unsupported_media_type",
        )
    )

# Oversized headers (limit 16 KiB in total): answered by the app, before the body is read.
BIG = [("X-Big", "a" * 20_000)]
MANY = [(f"X-Header-{i}", "b" * 100) for i in range(300)]
JUST_OVER = [(f"X-H{i}", "c" * 1000) for i in range(17)]
TINY_MANY = [(f"X{i}", "d") for i in range(6000)]
for name, extra in [
    ("one-huge", BIG),
    ("many", MANY),
    ("just-over-16k", JUST_OVER),
    ("thousands-tiny", TINY_MANY),
]:
    headers = [("Content-Type", "application/octet-stream"), *extra]
    ROWS.append(
        Row(
            f"headers-{name}-put",
            put("/api/devices/intruder", headers=headers),
            431,
            "headers_too_large",
        )
    )
    ROWS.append(
        Row(
            f"headers-{name}-get",
            http_request("GET", "/api/devices/", token=ADMIN, headers=extra),
            431,
            "headers_too_large",
        )
    )
ROWS.append(
    Row(
        "headers-huge-authorization",
        put("/api/devices/intruder", token="a" * 20_000),
        431,
        "headers_too_large",
    )
)

# Lengths that lie, or framing the HTTP parser refuses.
ROWS += [
    Row(
        "body-shorter-than-declared-then-close",
        put("/api/devices/intruder", b"abc", content_length=100),
        400,
        "incomplete_body",
        half_close=True,
    ),
    Row(
        "multipart-shorter-than-declared-then-close",
        form_put(GOOD_FILE + END, content_length=len(GOOD_FILE + END) + 500),
        400,
        "malformed_body",
        half_close=True,
    ),
    Row(
        "no-length-no-chunking",
        put("/api/devices/intruder", b"", content_length=None),
        411,
        "length_required",
    ),
    Row(
        "content-length-negative",
        put(
            "/api/devices/intruder",
            b"abc",
            content_length=False,
            headers=[("Content-Type", "application/octet-stream"), ("Content-Length", "-3")],
        ),
        400,
        PARSER,
    ),
    Row(
        "content-length-not-a-number",
        put(
            "/api/devices/intruder",
            b"abc",
            content_length=False,
            headers=[("Content-Type", "application/octet-stream"), ("Content-Length", "3x")],
        ),
        400,
        PARSER,
    ),
    Row(
        "content-length-twice",
        put(
            "/api/devices/intruder",
            b"abcde",
            content_length=False,
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", "3"),
                ("Content-Length", "5"),
            ],
        ),
        400,
        PARSER,
    ),
    Row(
        "content-length-and-chunked",
        put(
            "/api/devices/intruder",
            b"3\r\nabc\r\n0\r\n\r\n",
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("Transfer-Encoding", "chunked"),
            ],
        ),
        400,
        PARSER,
    ),
]

# Tokens. A missing token gets the bare challenge; a bad one adds error="invalid_token".
BARE = (("www-authenticate", 'Bearer realm="mindproject"'),)
INVALID = (("www-authenticate", 'Bearer realm="mindproject", error="invalid_token"'),)
REQUEST = (("www-authenticate", 'Bearer realm="mindproject", error="invalid_request"'),)
BAD_TOKENS = [
    ("malformed", "not-a-token", INVALID),
    ("three-garbage-parts", "a.b.c", INVALID),
    ("expired", EXPIRED_ADMIN, INVALID),
    ("expired-by-hand", EXPIRED_BY_HAND, INVALID),
    ("tampered-role", tampered(OPERATOR, role="admin"), INVALID),
    ("tampered-device", tampered(INTRUDER, sub=VICTIM), INVALID),
    ("tampered-exp", tampered(make_token("admin", ttl=-3600), exp=NOW + 3600), INVALID),
    ("other-key", OTHER_KEY_OWN_KID, INVALID),
    ("other-key-claiming-our-kid", OTHER_KEY_OUR_KID, INVALID),
    ("alg-none", ALG_NONE, INVALID),
    ("alg-none-with-kid", ALG_NONE_WITH_KID, INVALID),
    ("alg-None", ALG_NONE_CAPS, INVALID),
    ("alg-none-with-our-signature", ALG_NONE_WITH_KID + ADMIN.split(".")[2], INVALID),
    ("hs512", HS512_RIGHT_KEY, INVALID),
    ("rs256-confusion", RS256_CONFUSION, INVALID),
    ("unknown-kid", UNKNOWN_KID, INVALID),
    ("no-kid", NO_KID, INVALID),
    ("kid-path", KID_TRAVERSAL, INVALID),
    ("signature-stripped", ADMIN.rsplit(".", 1)[0] + ".", INVALID),
    ("signature-flipped", ADMIN[:-2] + ("AA" if not ADMIN.endswith("AA") else "BB"), INVALID),
]
for name, token, challenge in BAD_TOKENS:
    ROWS.append(
        Row(
            f"token-{name}-put",
            put(f"/api/devices/{VICTIM}", token=token),
            401,
            "unauthorized",
            challenge,
        )
    )
    ROWS.append(
        Row(
            f"token-{name}-delete",
            http_request("DELETE", f"/api/devices/{VICTIM}", token=token),
            401,
            "unauthorized",
            challenge,
        )
    )
ROWS += [
    Row("token-missing-put", put(f"/api/devices/{VICTIM}", token=None), 401, "unauthorized", BARE),
    Row("token-missing-list", http_request("GET", "/api/devices/"), 401, "unauthorized", BARE),
    Row(
        "token-missing-delete",
        http_request("DELETE", f"/api/devices/{VICTIM}"),
        401,
        "unauthorized",
        BARE,
    ),
    Row(
        "token-in-query-string",
        http_request("DELETE", f"/api/devices/{VICTIM}?token={ADMIN}"),
        401,
        "unauthorized",
        BARE,
    ),
    Row(
        "token-in-access-token-param",
        http_request("DELETE", f"/api/devices/{VICTIM}?access_token={ADMIN}"),
        401,
        "unauthorized",
        BARE,
    ),
    Row(
        "token-basic-scheme",
        put(
            f"/api/devices/{VICTIM}",
            token=None,
            headers=[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        ),
        401,
        "unauthorized",
        REQUEST,
    ),
    Row(
        "token-bearer-empty",
        put(f"/api/devices/{VICTIM}", token=None, headers=[("Authorization", "Bearer ")]),
        401,
        "unauthorized",
        REQUEST,
    ),
    # Another device's token, and a device token where only operators and admins may go.
    Row("device-put-other-device", put(f"/api/devices/{VICTIM}", token=INTRUDER), 403, "forbidden"),
    Row(
        "device-get-other-device",
        http_request("GET", f"/api/devices/{VICTIM}", token=INTRUDER),
        403,
        "forbidden",
    ),
    Row(
        "device-history-other-device",
        http_request("GET", f"/api/devices/{VICTIM}/uploads", token=INTRUDER),
        403,
        "forbidden",
    ),
    Row("device-list", http_request("GET", "/api/devices/", token=INTRUDER), 403, "forbidden"),
    Row(
        "device-delete-other-device",
        http_request("DELETE", f"/api/devices/{VICTIM}", token=INTRUDER),
        403,
        "forbidden",
    ),
    Row(
        "device-delete-own-device",
        http_request("DELETE", f"/api/devices/{VICTIM}", token=VICTIM_TOKEN),
        403,
        "forbidden",
    ),
    Row(
        "device-delete-own-version",
        http_request(
            "DELETE", f"/api/devices/{VICTIM}/uploads/0000000000000000-00000000", token=VICTIM_TOKEN
        ),
        403,
        "forbidden",
    ),
    Row(
        "device-lift-own-revocation",
        http_request("DELETE", f"/api/revocations/{VICTIM}", token=VICTIM_TOKEN),
        403,
        "forbidden",
    ),
    Row("operator-upload", put(f"/api/devices/{VICTIM}", token=OPERATOR), 403, "forbidden"),
    Row(
        "operator-upload-new-device", put("/api/devices/intruder", token=OPERATOR), 403, "forbidden"
    ),
    Row(
        "operator-delete",
        http_request("DELETE", f"/api/devices/{VICTIM}", token=OPERATOR),
        403,
        "forbidden",
    ),
    Row(
        "operator-delete-version",
        http_request(
            "DELETE", f"/api/devices/{VICTIM}/uploads/0000000000000000-00000000", token=OPERATOR
        ),
        403,
        "forbidden",
    ),
]


PARAMS = [pytest.param(row, id=row.id) for row in ROWS]


@pytest.mark.server
@pytest.mark.parametrize("row", PARAMS)
def test_hostile_request_is_refused_and_stores_nothing(target: Target, row: Row) -> None:
    try:
        raw = send_raw(target.server.url, row.request, half_close=row.half_close)
        if not (row.half_close and not raw):
            # (A client that left mid-body may get no answer at all: nobody is there to read it.)
            response = parse_response(raw)
            assert_refused(response, row.status, row.code)
            for name, value in row.headers:
                assert response.headers.get(name) == value, (name, response.headers)
        target.assert_unchanged()
    except BaseException:
        target.restore()
        raise


def test_table_covers_every_category() -> None:
    prefixes = {row.id.split("-")[0] for row in ROWS}
    assert {
        "put",
        "get",
        "uploads",
        "multipart",
        "content",
        "headers",
        "body",
        "token",
        "device",
        "operator",
    } <= prefixes
    assert len({row.id for row in ROWS}) == len(ROWS)


# --- lengths that lie, on requests that are otherwise fine -------------------------------------
# These share the module's `live_server` (not `target`, whose state the table checks): each
# has its own device and checks the device list against the one it found.
def listed_devices(server: RunningServer) -> list[str]:
    with server.client() as admin:
        devices: list[str] = admin.get("/api/devices/").json()["TelemetryDataDownloads"]
        return devices


@pytest.mark.server
def test_bytes_beyond_content_length_are_not_stored(live_server: RunningServer) -> None:
    """Content-Length says 3, 30 follow: exactly the 3 declared bytes are stored; the rest is
    either ignored (Connection: close) or parsed as a next request, never appended."""
    server = live_server
    before = listed_devices(server)
    request = put("/api/devices/extra-1", b"abc" + b"SMUGGLED-" * 3 + b"\r\n\r\n", content_length=3)
    response = parse_response(send_raw(server.url, request))
    assert response.status_code == 200, response.text
    assert response.json()["size"] == 3
    with server.client() as admin:
        assert admin.get("/api/devices/extra-1", params={"encoding": "raw"}).content == b"abc"
        assert len(admin.get("/api/devices/extra-1/uploads").json()["uploads"]) == 1
    assert listed_devices(server) == sorted([*before, "extra-1"])


@pytest.mark.server
def test_pipelined_garbage_after_the_body_is_not_stored(live_server: RunningServer) -> None:
    """Keep-alive: the bytes after the declared body are a second "request" that httptools
    refuses with its plain-text 400. Whether or not the first request's 200 makes it out before
    that 400 (uvicorn closes the connection at once), what is stored is exactly 3 bytes."""
    server = live_server
    before = listed_devices(server)
    request = put("/api/devices/extra-2", b"abcGARBAGE\r\n\r\n", content_length=3).replace(
        b"Connection: close\r\n", b""
    )
    raw = send_raw(server.url, request)
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    with server.client() as admin:
        deadline = time.monotonic() + 5
        while (listing := listed_devices(server)) == before:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if listing != before:  # the first request completed: it stored the declared bytes only
            assert listing == sorted([*before, "extra-2"])
            uploads = admin.get("/api/devices/extra-2/uploads").json()["uploads"]
            assert [u["size"] for u in uploads] == [3]
            assert admin.get("/api/devices/extra-2", params={"encoding": "raw"}).content == b"abc"


@pytest.mark.server
def test_multipart_bytes_beyond_content_length_are_not_stored(live_server: RunningServer) -> None:
    """A form whose Content-Length stops before its closing delimiter: refused, not stored."""
    server = live_server
    before = listed_devices(server)
    body = part("file", b"payload") + END + b"EXTRA"
    request = form_put(body, content_length=len(part("file", b"payload")) - 4).replace(
        f"/api/devices/{VICTIM}".encode(), b"/api/devices/extra-3"
    )
    assert_error(parse_response(send_raw(server.url, request)), 400, "malformed_body")
    assert listed_devices(server) == before


# --- the legitimate roles still work -----------------------------------------------------------
def test_admin_may_upload_and_delete_device_may_upload_its_own(server: AppServer) -> None:
    with server.client() as admin:
        assert admin.put("/api/devices/d", files={"file": ("f", b"x")}).status_code == 200
        with server.client(make_token("device", "d")) as device:
            own = device.put("/api/devices/d", files={"file": ("f", b"y")})
            assert own.status_code == 200, own.text
            assert device.get("/api/devices/d", params={"encoding": "raw"}).content == b"y"
        with server.client(make_token("operator")) as operator:
            assert operator.get("/api/devices/").json()["TelemetryDataDownloads"] == ["d"]
            assert operator.get("/api/devices/d", params={"encoding": "raw"}).content == b"y"
        deleted = admin.delete("/api/devices/d")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"device_id": "d", "deleted_uploads": 2}
        assert admin.get("/api/devices/").json()["TelemetryDataDownloads"] == []


# --- header floods are cut off while they arrive -----------------------------------------------
@pytest.mark.server
def test_endless_header_is_cut_off_before_it_is_all_read(live_server: RunningServer) -> None:
    host, port = live_server.url.removeprefix("http://").rsplit(":", 1)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /api/devices/ HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        try:
            while sent < 8 * 1024 * 1024:  # 512 times the limit
                sock.sendall(b"f" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            return  # cut off: the server stopped reading
        sock.settimeout(0.5)
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 431"), f"still reading after {sent} bytes of one header"
