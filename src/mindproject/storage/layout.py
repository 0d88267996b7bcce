"""Object keys of the object-store backends (S3, memory). See docs/storage.md.

    <prefix>/devices/<device>                         empty marker: one per device, for listing
    <prefix>/uploads/<device>/<version>.<sha256>.<size>.<kind>.<meta>   one per version
        (<meta>: base64url of the JSON [file name, content type, idempotency key])
    <prefix>/blobs/<device>/<version>                 bytes of a large version (kind "b")
    <prefix>/revocations/<device>/<revoked_at_us>     empty: the device's tokens until then fail
    <prefix>/idempotency/<device>/<key>               the version an Idempotency-Key stands for
    <prefix>/direct/<device>/<staging id>             a direct upload's bytes, PUT by the client
    <prefix>/direct/<device>/<staging id>.json        what the client declared (size, sha256, …)

Version ids sort newest first, so listing `uploads/<device>/` gives the latest version first
and a page of versions, with all their metadata, in one LIST request. Small uploads (kind "i")
keep their bytes in the version object itself: one PUT makes them visible. Large ones are written
to `blobs/` by multipart upload first, and become visible when the version object is written.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import NamedTuple

from mindproject.storage.base import UploadInfo

INLINE = "i"
BLOB = "b"


class ParsedUploadKey(NamedTuple):
    info: UploadInfo
    kind: str  # INLINE or BLOB
    idempotency_key: str | None


@dataclass(frozen=True)
class Layout:
    prefix: str

    def _join(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    @property
    def devices_dir(self) -> str:
        return self._join("devices")

    def device_marker(self, device_id: str) -> str:
        return self._join("devices", device_id)

    def uploads_dir(self, device_id: str) -> str:
        return self._join("uploads", device_id)

    def upload_offset(self, device_id: str, version: str) -> str:
        """The LIST start-after key just before `version`'s key ("<version>" < "<version>.<…>")."""
        return self._join("uploads", device_id, version)

    def upload_offset_after(self, device_id: str, version: str) -> str:
        """The LIST start-after key past `version`'s key: '~' sorts after its fields' characters."""
        return self._join("uploads", device_id, f"{version}.~")

    def upload_key(self, info: UploadInfo, kind: str, idempotency_key: str | None = None) -> str:
        meta = ""
        fields = [info.filename, info.content_type, idempotency_key]
        if any(value is not None for value in fields):
            # UTF-8, not \u escapes: a non-ASCII file name must not blow the 1,024-byte key limit.
            raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
            meta = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        name = f"{info.version}.{info.sha256}.{info.size}.{kind}.{meta}"
        return self._join("uploads", info.device_id, name)

    def blob_key(self, device_id: str, version: str) -> str:
        return self._join("blobs", device_id, version)

    def idempotency_dir(self, device_id: str) -> str:
        return self._join("idempotency", device_id)

    def idempotency_key(self, device_id: str, key: str) -> str:
        return self._join("idempotency", device_id, key)

    @property
    def revocations_dir(self) -> str:
        return self._join("revocations")

    def revocations_of(self, device_id: str) -> str:
        return self._join("revocations", device_id)

    def revocation_key(self, device_id: str, revoked_at: float) -> str:
        return self._join("revocations", device_id, str(round(revoked_at * 1_000_000)))

    def parse_revocation_key(self, key: str) -> tuple[str, float]:
        device_dir, _, micros = key.rpartition("/")
        return device_dir.rpartition("/")[2], int(micros) / 1_000_000

    def parse_upload_key(self, key: str) -> ParsedUploadKey:
        """What an upload key holds; ValueError if it is not one."""
        device_dir, _, name = key.rpartition("/")
        device_id = device_dir.rpartition("/")[2]
        version, sha256, size, kind, meta = name.split(".")
        filename = content_type = idempotency_key = None
        if meta:
            try:
                raw = base64.urlsafe_b64decode(meta + "=" * (-len(meta) % 4))
                fields: list[str | None] = [*json.loads(raw), None]  # two fields in older keys
                filename, content_type, idempotency_key = fields[:3]
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"bad metadata in {key}") from exc
        data_key = key if kind == INLINE else self.blob_key(device_id, version)
        info = UploadInfo(
            device_id, version, int(size), sha256, filename, content_type, locator=data_key
        )
        return ParsedUploadKey(info, kind, idempotency_key)

    # direct uploads ---------------------------------------------------------------------------
    @property
    def direct_dir(self) -> str:
        return self._join("direct")

    def direct_staging_key(self, device_id: str, staging_id: str) -> str:
        """The one key a direct upload's presigned URL may write."""
        return self._join("direct", device_id, staging_id)

    def direct_state_key(self, device_id: str, staging_id: str) -> str:
        return self._join("direct", device_id, f"{staging_id}.json")

    def parse_direct_key(self, key: str) -> tuple[str, str]:
        """(device id, staging id) of a staging or state key; ValueError if it is neither."""
        device_dir, _, name = key.rpartition("/")
        device_id = device_dir.rpartition("/")[2]
        staging_id = name.removesuffix(".json")
        if not device_id or device_dir.rpartition("/")[0] != self.direct_dir:
            raise ValueError(f"not a direct upload key: {key}")
        return device_id, staging_id


def device_list_offset(devices_dir: str, prefix: str, after: str | None) -> str | None:
    """The LIST start-after key that skips straight to ids > after and starting with prefix.

    Device ids use only characters below '~', so `<prefix minus its last char><that char - 1>~`
    sorts after every id that comes before the prefix and before every id that starts with it.
    """
    candidates = []
    if after is not None:
        candidates.append(f"{devices_dir}/{after}")
    if prefix:
        before = prefix[:-1] + chr(ord(prefix[-1]) - 1) + "~"
        candidates.append(f"{devices_dir}/{before}")
    return max(candidates) if candidates else None
