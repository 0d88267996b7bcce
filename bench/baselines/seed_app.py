"""RECONSTRUCTION of the seed's API server, for benchmarks only.

The seed's source is not in this repository. This file is written from the seed README's
description ("a Flask application ... uploaded files streamed directly to S3 using boto3 and
binary data within an S3 object is streamed to the client when downloaded", Swagger UI under
/api/, the three curl calls) and the measured facts in shared/notes/test-infrastructure.md:
Flask + flask-restx + boto3, a NEW boto3 client per request, botocore logging at DEBUG (the seed
always ran in debug mode), gunicorn with one sync worker (its Dockerfile's command), whole-object
reads with a base64 copy in memory, list_objects capped at 1,000 keys, failures answered 200.

It is the seed's *design* as described, not its exact code. Storage is chosen by
BENCH_STORAGE: ``s3://bucket`` (the seed's only backend) or ``file:///abs/dir`` (an adaptation
for the filesystem scenarios: same stack, files instead of objects, no boto3 at all).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import boto3
from flask import Flask, Response, request
from flask_restx import Api, Resource

logging.basicConfig(level=logging.DEBUG)  # the seed ran in debug mode: botocore logs at DEBUG

STORAGE = os.environ.get("BENCH_STORAGE", "s3://bench-seed")
IS_S3 = STORAGE.startswith("s3://")
BUCKET = STORAGE[len("s3://") :].split("/", 1)[0] if IS_S3 else ""
ROOT = Path(STORAGE[len("file://") :]) if not IS_S3 else Path()

app = Flask(__name__)
app.config["DEBUG"] = True
api = Api(app, version="1.0", title="IoT Telemetry API", doc="/api/")
ns = api.namespace("api/devices", description="Telemetry uploads")


def s3_client() -> Any:
    # The seed's design: a new client (and so a new connection pool) for every request.
    return boto3.client("s3")


@ns.route("/")
class DeviceList(Resource):
    def get(self) -> dict[str, Any]:
        if IS_S3:
            # One list_objects call: at most 1,000 keys, KeyError (500) on an empty bucket.
            resp = s3_client().list_objects(Bucket=BUCKET)
            keys = [obj["Key"] for obj in resp["Contents"]]
        else:
            keys = sorted(os.listdir(ROOT))[:1000]
        return {"TelemetryDataDownloads": keys}


@ns.route("/<string:deviceid>")
class Device(Resource):
    def put(self, deviceid: str) -> dict[str, Any]:
        try:
            upload = request.files["file"]
            if IS_S3:
                s3_client().upload_fileobj(upload, BUCKET, deviceid)
            else:
                upload.save(ROOT / deviceid)
        except Exception as exc:  # the seed answered 200 with an error message
            return {"message": f"Error uploading file: {exc}"}
        return {"message": f"File uploaded for Device ID - {deviceid}"}

    def get(self, deviceid: str) -> Response:
        try:
            if IS_S3:
                body = s3_client().get_object(Bucket=BUCKET, Key=deviceid)["Body"].read()
            else:
                body = (ROOT / deviceid).read_bytes()
        except Exception:
            return Response("null", mimetype="application/json")  # 200 null for a missing device
        return Response(base64.b64encode(body), mimetype="application/octet-stream")
