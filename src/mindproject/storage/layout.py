"""Object keys of the object-store backends (S3, memory). See docs/storage.md.

    <prefix>/devices/<device>                         empty marker: one per device, for listing
    <prefix>/uploads/<device>/<version>.<sha256>.<size>.<kind>.<meta>   one per version
        (<meta>: base64url of the JSON [file name, content type, idempotency key])
    <prefix>/blobs/<device>/<version>                 bytes of a large version (kind "b")
    <prefix>/revocations/<device>/<revoked_at_us>     empty: the device's tokens until then fail
    <prefix>/idempotency/<device>/<key>               the version an Idempotency-Key stands for
    <prefix>/resumable/<device>/<upload>/log/<inverted start offset>[.length], or log/~
    <prefix>/resumable/<device>/<upload>/log/!removed     the upload was removed (tombstone)
                                                      a resumable upload's state after each chunk
    <prefix>/resumable/<device>/<upload>/claim/<offset>   an append under way at that offset
    <prefix>/resumable/<device>/<upload>/data/<offset>.<nonce>.<piece>   a chunk's bytes
    <prefix>/direct/<device>/<staging id>             a direct upload's bytes, PUT by the client
    <prefix>/direct/<device>/<staging id>.json        what the client declared (size, sha256, …)
    <prefix>/segments/<hour>/<time>-<random>          fleet mode: small uploads, group-committed
    <prefix>/segments/<hour>/v<version>.<device>      fleet mode: a large upload's own object

Version ids sort newest first, so listing `uploads/<device>/` gives the latest version first
and a page of versions, with all their metadata, in one LIST request. Small uploads (kind "i")
keep their bytes in the version object itself: one PUT makes them visible. Large ones are written
to `blobs/` by multipart upload first, and become visible when the version object is written.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, replace
from typing import NamedTuple

from mindproject.storage.base import UploadInfo

INLINE = "i"
BLOB = "b"
# Offsets in keys: 20 digits, so they sort numerically. Log records use the inverted offset so the
# newest record is the first key a LIST returns; the creation record "~" sorts after all digits.
_OFFSET_DIGITS = 20
_INVERT = 10**_OFFSET_DIGITS - 1
CREATION = "~"
# S3's limit on an object key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
TOMBSTONE = "!removed"  # "!" sorts before the digits


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

    # The fleet mode (indexed.py): every object holding version bytes is under segments/<hour
    # it was made, UTC>/, so the orphan sweep lists only the hours it has not checked.
    @property
    def segments_dir(self) -> str:
        return self._join("segments")

    def segments_hour(self, moment: float) -> str:
        return self._join("segments", time.strftime("%Y%m%dT%H", time.gmtime(moment)))

    def segment_key(self, moment: float, name: str) -> str:
        return f"{self.segments_hour(moment)}/{name}"

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

    def fitting_upload_key(
        self, info: UploadInfo, kind: str, idempotency_key: str | None = None
    ) -> tuple[UploadInfo, str]:
        """`info` and its upload key, the file name cut until the key fits MAX_KEY_BYTES: JSON
        escapes (of quotes, say) can double a 255-byte name, and S3 refuses a longer key. A name
        is informational; a refused key would lose the upload."""
        key = self.upload_key(info, kind, idempotency_key)
        name = info.filename
        while name and len(key.encode()) > MAX_KEY_BYTES:
            name = name[: -max(1, (len(key.encode()) - MAX_KEY_BYTES) // 8)]
            info = replace(info, filename=name or None)
            key = self.upload_key(info, kind, idempotency_key)
        return info, key

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

    # resumable uploads ---------------------------------------------------------------------
    @property
    def resumable_root(self) -> str:
        return self._join("resumable")

    def resumable_device_dir(self, device_id: str) -> str:
        return self._join("resumable", device_id)

    def resumable_dir(self, device_id: str, upload_id: str) -> str:
        return self._join("resumable", device_id, upload_id)

    def resumable_log_dir(self, device_id: str, upload_id: str) -> str:
        return self._join("resumable", device_id, upload_id, "log")

    def resumable_record(
        self, device_id: str, upload_id: str, start: int | None, *, declaration: bool = False
    ) -> str:
        """The state after the chunk that started at `start` (None: the creation record).

        A deferred length declared without bytes gets `<inverted offset>.length`: it sorts
        after the record of the chunk that will start at that offset, before all older ones.
        """
        name = CREATION if start is None else f"{_INVERT - start:0{_OFFSET_DIGITS}d}"
        if declaration:
            name += ".length"
        return self._join("resumable", device_id, upload_id, "log", name)

    def resumable_tombstone(self, device_id: str, upload_id: str) -> str:
        """Written first when an upload is removed: it sorts before every record, so the upload
        reads as gone even if an append that was under way commits a record afterwards."""
        return self._join("resumable", device_id, upload_id, "log", TOMBSTONE)

    def parse_resumable_record(self, key: str) -> int | None:
        """The start offset of a log record's chunk (None: the creation record)."""
        name = key.rpartition("/")[2].partition(".")[0]
        return None if name == CREATION else _INVERT - int(name)

    def resumable_claims_dir(self, device_id: str, upload_id: str) -> str:
        return self._join("resumable", device_id, upload_id, "claim")

    def resumable_claim(self, device_id: str, upload_id: str, offset: int) -> str:
        return self._join(
            "resumable", device_id, upload_id, "claim", f"{offset:0{_OFFSET_DIGITS}d}"
        )

    def resumable_completion_claim(self, device_id: str, upload_id: str) -> str:
        return self._join("resumable", device_id, upload_id, "claim", "complete")

    def resumable_data_dir(self, device_id: str, upload_id: str) -> str:
        return self._join("resumable", device_id, upload_id, "data")

    def resumable_piece(
        self, device_id: str, upload_id: str, offset: int, nonce: str, piece: int
    ) -> str:
        name = f"{offset:0{_OFFSET_DIGITS}d}.{nonce}.{piece:06d}"
        return self._join("resumable", device_id, upload_id, "data", name)

    def parse_resumable_piece(self, key: str) -> tuple[int, str, int]:
        """(chunk start offset, nonce, piece number) of a data key."""
        offset, nonce, piece = key.rpartition("/")[2].split(".")
        return int(offset), nonce, int(piece)

    def parse_resumable_dir(self, key: str) -> tuple[str, str]:
        """(device, upload id) of any key under resumable/."""
        root = self.resumable_root + "/"
        device_id, upload_id, _ = key[len(root) :].split("/", 2)
        return device_id, upload_id

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
