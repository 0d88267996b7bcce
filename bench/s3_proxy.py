#!/usr/bin/env python3
"""A counting HTTP/1.1 relay in front of the S3 server: what the S3 server receives, by kind.

The replicas reach S3 through it (AWS_ENDPOINT_URL=http://127.0.0.1:<its port>, path-style).
It only frames requests (head, then Content-Length bytes or chunked framing) and relays the
bytes unchanged both ways: signatures stay valid, and each request the S3 server receives is
counted once, multipart parts included. The answers are relayed as a raw byte stream.

Its own control path, never forwarded: `GET /__bench/counts` answers the counts as JSON
(`{"kinds": {...}, "methods": {...}, "total": n}`), `POST /__bench/reset` zeroes them.

Runs as its own process (`python bench/s3_proxy.py --upstream-port P --port-file F`), so that
its CPU is neither the servers' nor the load generator's; the fleet benchmark reports it apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

CONTROL = "/__bench/"

# The kinds, priced as S3 prices them: PUT/COPY/POST/LIST are one tier, GET/HEAD the other,
# DELETE is free (see bench/costmodel.py).
KINDS = (
    "put_object",
    "copy_object",
    "multipart_create",
    "multipart_part",
    "multipart_complete",
    "multipart_abort",
    "get_object",
    "get_ranged",
    "head",
    "list",
    "delete",
    "delete_multi",
    "bucket_other",
    "other",
)


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The kind of S3 request a path-style request line is (headers: lower-case names)."""
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = parts.path.lstrip("/")
    bucket, _, key = path.partition("/")
    method = method.upper()
    if not bucket:
        return "other"  # ListBuckets, or a probe of the endpoint
    if not key:  # a request on the bucket itself
        if method == "GET" and ("list-type" in query or not query or "prefix" in query):
            return "list"
        if method == "POST" and "delete" in query:
            return "delete_multi"
        if method == "HEAD":
            return "head"
        return "bucket_other"
    if "uploadId" in query:
        if method == "PUT":
            return "multipart_part"
        if method == "POST":
            return "multipart_complete"
        if method == "DELETE":
            return "multipart_abort"
        return "other"  # ListParts
    if method == "POST" and "uploads" in query:
        return "multipart_create"
    if method == "PUT":
        return "copy_object" if "x-amz-copy-source" in headers else "put_object"
    if method == "GET":
        return "get_ranged" if "range" in headers else "get_object"
    if method == "HEAD":
        return "head"
    if method == "DELETE":
        return "delete"
    return "other"


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, target and lower-cased header fields of a request head (ending in CRLF CRLF)."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return method, target, fields


class Counts:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()

    def add(self, method: str, kind: str) -> None:
        self.kinds[kind] += 1
        self.methods[method.upper()] += 1

    def reset(self) -> None:
        self.kinds.clear()
        self.methods.clear()

    def document(self) -> dict[str, object]:
        return {
            "kinds": dict(self.kinds),
            "methods": dict(self.methods),
            "total": sum(self.kinds.values()),
        }


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts = Counts()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        answering: asyncio.Future[None] | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, fields = parse_head(head)
                if target.startswith(CONTROL):
                    await self._control(method, target, writer)
                    continue
                if up is None:
                    up = await asyncio.open_connection(*self.upstream)
                    answering = asyncio.ensure_future(_pipe(up[0], writer))
                self.counts.add(method, classify(method, target, fields))
                up_writer = up[1]
                up_writer.write(head)
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    await _relay_chunked(reader, up_writer)
                else:
                    remaining = int(fields.get("content-length", "0") or 0)
                    while remaining:
                        data = await reader.read(min(remaining, 1 << 16))
                        if not data:
                            raise ConnectionError("client closed mid-body")
                        up_writer.write(data)
                        remaining -= len(data)
                        await up_writer.drain()
                await up_writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            if answering is not None:
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    # let the last answer finish before closing
                    await asyncio.wait_for(asyncio.shield(answering), timeout=0.05)
                answering.cancel()
            if up is not None:
                up[1].close()
            writer.close()

    async def _control(self, method: str, target: str, writer: asyncio.StreamWriter) -> None:
        if method == "POST" and target.startswith(CONTROL + "reset"):
            self.counts.reset()
        body = json.dumps(self.counts.document()).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(1 << 16):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(ConnectionError, OSError):
        dst.close()


async def _relay_chunked(reader: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        dst.write(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                dst.write(line)
                if line == b"\r\n":
                    return
        dst.write(await reader.readexactly(size + 2))
        await dst.drain()


async def serve(upstream: str, port: int, port_file: Path | None) -> None:
    host, _, up_port = upstream.rpartition(":")
    proxy = CountingProxy(host or "127.0.0.1", int(up_port))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        tmp.replace(port_file)
    print(f"counting proxy on 127.0.0.1:{bound} -> {upstream}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--upstream", required=True, help="host:port of the S3 server")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    args = p.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream, args.port, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
