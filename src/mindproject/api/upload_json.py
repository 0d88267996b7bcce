"""The JSON the API answers for one stored version (upload answers and upload listings).

Storage records know nothing of the API's response shape: it is built here, from the record.
"""

from __future__ import annotations

from mindproject.identifiers import format_time
from mindproject.storage import UploadInfo


def upload_json(info: UploadInfo) -> dict[str, object]:
    return {
        "device_id": info.device_id,
        "version": info.version,
        "size": info.size,
        "sha256": info.sha256,
        "uploaded_at": format_time(info.uploaded_at),
        "filename": info.filename,
        "content_type": info.content_type,
    }
