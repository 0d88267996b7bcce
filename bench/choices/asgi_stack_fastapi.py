"""Candidate 3: FastAPI's default ``UploadFile`` path.

Starlette's form parser spools the part into a SpooledTemporaryFile (rolls to
disk past 1 MiB); the handler then reads it back in 1 MiB chunks, as a handler
copying it to storage would.
"""

from __future__ import annotations

from fastapi import FastAPI, UploadFile

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.put("/upload")
async def upload(file: UploadFile) -> dict[str, int]:
    size = 0
    while chunk := await file.read(1 << 20):
        size += len(chunk)
    return {"size": size}
