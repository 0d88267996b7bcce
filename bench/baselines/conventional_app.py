"""The conventional synchronous stack, done well: a benchmark baseline.

Flask + boto3 under gunicorn, with what a careful team would do without changing stacks: one
boto3 client shared by all requests of a worker (clients are thread-safe), a connection pool
sized for the worker's threads, logging at WARNING, uploads streamed from the parsed multipart
part (or the raw body) to storage, downloads streamed in chunks (raw or base64, 3-byte aligned),
and a paginated device list (``?limit=&cursor=``). Run with as many workers as MindProject.

Storage is chosen by BENCH_STORAGE: ``s3://bucket`` or ``file:///abs/dir`` (atomic writes through a
temporary file and rename). One object per device, overwritten by each upload (no versions).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from flask import Flask, Response, jsonify, request

logging.basicConfig(level=logging.WARNING)

STORAGE = os.environ.get("BENCH_STORAGE", "s3://bench-conventional")
IS_S3 = STORAGE.startswith("s3://")
BUCKET = STORAGE[len("s3://") :].split("/", 1)[0] if IS_S3 else ""
ROOT = Path(STORAGE[len("file://") :]) if not IS_S3 else Path()
CHUNK = 3 * 64 * 1024  # a multiple of 3, so base64 chunks concatenate into valid base64

S3 = boto3.client("s3", config=Config(max_pool_connections=32)) if IS_S3 else None

app = Flask(__name__)


def _store(stream: IO[bytes], device_id: str) -> None:
    if S3 is not None:
        S3.upload_fileobj(stream, BUCKET, device_id)
        return
    fd, tmp = tempfile.mkstemp(dir=ROOT, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        os.replace(tmp, ROOT / device_id)
    except BaseException:
        os.unlink(tmp)
        raise


def _chunks(device_id: str) -> Iterator[bytes]:
    if S3 is not None:
        body = S3.get_object(Bucket=BUCKET, Key=device_id)["Body"]
        yield from body.iter_chunks(CHUNK)
        return
    with open(ROOT / device_id, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


@app.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok")


@app.put("/api/devices/<device_id>")
def upload(device_id: str) -> Any:
    if request.mimetype == "multipart/form-data":
        _store(request.files["file"].stream, device_id)
    else:
        _store(request.stream, device_id)
    return jsonify(message=f"File uploaded for Device ID - {device_id}", device_id=device_id)


@app.get("/api/devices/<device_id>")
def download(device_id: str) -> Any:
    chunks = _chunks(device_id)
    try:
        first = next(chunks, b"")
    except Exception:
        return jsonify(error={"code": "not_found", "message": device_id}), 404

    def raw() -> Iterator[bytes]:
        yield first
        yield from chunks

    if request.args.get("encoding") == "raw":
        return Response(raw(), mimetype="application/octet-stream")

    def b64() -> Iterator[bytes]:
        pending = b""
        for chunk in raw():
            pending += chunk
            cut = len(pending) - len(pending) % 3
            yield base64.b64encode(pending[:cut])
            pending = pending[cut:]
        yield base64.b64encode(pending)

    return Response(b64(), mimetype="application/octet-stream")


@app.get("/api/devices/")
def list_devices() -> Any:
    limit = min(int(request.args.get("limit", "1000")), 1000)
    cursor = request.args.get("cursor", "")
    if S3 is not None:
        resp = S3.list_objects_v2(Bucket=BUCKET, MaxKeys=limit, StartAfter=cursor)
        keys = [obj["Key"] for obj in resp.get("Contents", [])]
        more = bool(resp.get("IsTruncated"))
    else:
        names = sorted(n for n in os.listdir(ROOT) if not n.startswith(".") and n > cursor)
        keys, more = names[:limit], len(names) > limit
    return jsonify(TelemetryDataDownloads=keys, next_cursor=keys[-1] if more and keys else None)
