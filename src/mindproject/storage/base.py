"""The storage interface every backend implements, and the records it returns.

Storage knows nothing of HTTP: it takes validated ids and byte streams, and raises errors from
`mindproject.errors` (DeviceNotFound, UploadNotFound, StorageUnavailable, ...).
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from mindproject.errors import NotSupportedByStorage
from mindproject.identifiers import version_time

CHUNK_BYTES = 256 * 1024

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """One stored version of a device's telemetry file."""

    device_id: str
    version: str
    size: int
    sha256: str
    filename: str | None
    content_type: str | None
    # Where a backend found the bytes when it read this record (an object key), so reading them
    # needs no second lookup. Not part of the record's identity.
    locator: str | None = field(default=None, compare=False, repr=False)

    @property
    def uploaded_at(self) -> datetime:
        return version_time(self.version)


@dataclass(frozen=True, slots=True)
class ResumableUpload:
    """The state of a resumable (tus) upload, as every replica reads it from storage.

    `offset` counts the bytes stored durably, in order from the start; `length` is None until a
    deferred length is declared. Once `offset == length` the upload has become the version
    `version`, and its state stays readable (until it expires) so that a client that lost the
    last answer learns it is done.
    """

    device_id: str
    upload_id: str
    length: int | None
    offset: int
    filename: str | None
    content_type: str | None
    expected_sha256: str | None  # hex, from the client's Upload-Metadata; checked at the end
    expires_at: float  # epoch seconds; each append moves it forward
    version: str | None = None

    @property
    def complete(self) -> bool:
        return self.version is not None


@dataclass(frozen=True, slots=True)
class DirectUploadTicket:
    """Where and how a device sends a direct upload's bytes: straight to the object store."""

    url: str  # presigned: valid for exactly one key, until expires_at
    method: str
    headers: dict[str, str]  # what the client must send with the request
    expires_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    last: str | None  # key of the last item when more follow, else None


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """One device's running figures, kept by the index in the same transaction as each upload
    and delete (never computed by walking versions)."""

    device_id: str
    last_upload_at: float | None  # epoch seconds of the newest version; None: no version left
    # None where the backend keeps no per-device figures (S3-only mode answers from its device
    # markers: an id and the time of the last upload, nothing more).
    uploads: int | None  # versions stored now
    bytes: int | None  # their total size
    last_size: int | None  # size of the newest version
    revoked_at: float | None  # epoch seconds when the device's tokens were revoked, else None


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """Counts over the whole fleet at `now` (each one an index range scan)."""

    devices: int
    silent_devices: int  # devices whose last upload is older than `silent_before`
    revoked_devices: int
    uploads_last_hour: int
    bytes_last_hour: int
    uploads_last_day: int
    bytes_last_day: int


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    start: float  # epoch seconds, aligned to a multiple of the bucket width
    uploads: int
    bytes: int


def activity_buckets(
    uploads: Iterable[tuple[float, int]], *, bucket_seconds: int, first: float, end: float
) -> list[ActivityBucket]:
    """Every bucket from `first` (aligned) up to `end`, zeros included, with the (time, size)
    of `uploads` counted in theirs; uploads outside the range are ignored."""
    totals: dict[int, tuple[int, int]] = {}
    for moment, size in uploads:
        index = int((moment - first) // bucket_seconds)
        uploads_in, bytes_in = totals.get(index, (0, 0))
        totals[index] = (uploads_in + 1, bytes_in + size)
    return bucket_series(totals, bucket_seconds=bucket_seconds, first=first, end=end)


def bucket_series(
    totals: Mapping[int, tuple[int, int]], *, bucket_seconds: int, first: float, end: float
) -> list[ActivityBucket]:
    """Every bucket from `first` (aligned) up to `end`, zeros included; `totals` maps a
    bucket's index counted from `first` to its (uploads, bytes), as an index may sum them."""
    count = max(0, math.ceil((end - first) / bucket_seconds))
    return [
        ActivityBucket(first + i * bucket_seconds, *totals.get(i, (0, 0))) for i in range(count)
    ]


class UploadSource(Protocol):
    """A byte stream whose size and sha256 are final once iteration has ended.

    Iteration raises (size limit, checksum mismatch, client gone) to make the backend abort.
    """

    size: int

    @property
    def sha256(self) -> str: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class Storage(abc.ABC):
    """Versions of telemetry files, per device. Writes become visible atomically."""

    @abc.abstractmethod
    async def save(
        self,
        device_id: str,
        version: str,
        source: UploadSource,
        *,
        filename: str | None,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> UploadInfo:
        """Store a whole stream as a new version; on any error nothing is left behind.

        With an idempotency key already used for this device by a version that still exists,
        nothing new is kept and that earlier version is returned instead (atomically: of two
        concurrent saves with one key, exactly one version survives).
        """

    @abc.abstractmethod
    async def find_by_key(self, device_id: str, idempotency_key: str) -> UploadInfo | None:
        """The version an idempotency key stands for, if it still exists."""

    @abc.abstractmethod
    async def latest(self, device_id: str) -> UploadInfo:
        """The newest version of a device, or DeviceNotFound."""

    @abc.abstractmethod
    async def get(self, device_id: str, version: str) -> UploadInfo:
        """One version, or UploadNotFound."""

    @abc.abstractmethod
    def read(
        self, info: UploadInfo, start: int = 0, end: int | None = None
    ) -> AsyncIterable[bytes]:
        """Stream bytes [start, end) of a version in bounded chunks."""

    @abc.abstractmethod
    async def list_devices(self, *, prefix: str, after: str | None, limit: int) -> Page[str]:
        """Device ids in ascending order, starting after `after`."""

    @abc.abstractmethod
    async def list_uploads(
        self, device_id: str, *, after: str | None, limit: int
    ) -> Page[UploadInfo]:
        """A device's versions, newest first, starting after version `after`."""

    @abc.abstractmethod
    async def delete_device(self, device_id: str) -> int:
        """Delete every version of a device; returns how many. DeviceNotFound if none."""

    @abc.abstractmethod
    async def delete_upload(self, device_id: str, version: str) -> None:
        """Delete one version, or UploadNotFound."""

    @abc.abstractmethod
    async def list_revocations(self) -> dict[str, float]:
        """Revoked devices: device id -> when (epoch seconds); tokens issued until then fail."""

    @abc.abstractmethod
    async def set_revocation(self, device_id: str, revoked_at: float | None) -> None:
        """Revoke a device's tokens issued until `revoked_at`, or unrevoke it with None."""

    # fleet view (needs an index: the file backend and the PostgreSQL index mode) -------------
    async def fleet_devices(
        self,
        *,
        prefix: str,
        after: str | None,
        limit: int,
        sort: str,
        silent_before: float | None,
    ) -> Page[DeviceSummary]:
        """Device summaries, paged. `sort` is "device_id" (ascending) or "last_upload_at"
        (oldest first, ties by device id); `after` is the opaque `Page.last` of the previous
        page for the same sort; `silent_before` keeps devices whose last upload is older.

        NotSupportedByStorage (501) where the backend keeps no index of per-device figures.
        """
        raise NotSupportedByStorage(
            "the fleet view needs an index (file backend or MINDPROJECT_INDEX)"
        )

    async def fleet_summary(self, *, now: float, silent_before: float) -> FleetSummary:
        """Fleet-wide counts; NotSupportedByStorage where the backend keeps no index."""
        raise NotSupportedByStorage(
            "the fleet view needs an index (file backend or MINDPROJECT_INDEX)"
        )

    async def device_activity(
        self, device_id: str, *, bucket_seconds: int, start: float, end: float
    ) -> list[ActivityBucket]:
        """Uploads and bytes per bucket of versions uploaded in [start, end), every bucket of
        the range listed (zeros included), oldest first. DeviceNotFound if the device has no
        version; NotSupportedByStorage where the backend keeps no index."""
        raise NotSupportedByStorage(
            "the fleet view needs an index (file backend or MINDPROJECT_INDEX)"
        )

    # resumable uploads (tus) -------------------------------------------------------------------
    @abc.abstractmethod
    async def create_resumable(self, upload: ResumableUpload, *, max_per_device: int) -> None:
        """Record a new, empty resumable upload (offset 0, no version).

        TooManyRequests when the device already has `max_per_device` unfinished, unexpired
        uploads (0: no cap).
        """

    @abc.abstractmethod
    async def resumable(self, device_id: str, upload_id: str) -> ResumableUpload:
        """The upload's state, or ResumableNotFound (never created, terminated, or expired)."""

    @abc.abstractmethod
    async def append_resumable(
        self,
        device_id: str,
        upload_id: str,
        offset: int,
        chunk: UploadSource,
        *,
        length: int | None,
        expires_at: float,
        version: str,
    ) -> ResumableUpload:
        """Append a chunk at `offset`; return the new state.

        - OffsetMismatch (with the current offset) unless `offset` is the upload's offset;
          ResumableNotFound if it is gone or expired; UploadBusy if another append to it is
          under way anywhere (any replica): of two racing appends, at most one is stored.
        - `length` declares a deferred length (once; a different one later is BadRequest).
        - The chunk is stored whole or not at all: when its iteration raises (size limit,
          checksum, client gone) the offset does not move and nothing is visible.
        - When the offset reaches the length the upload becomes version `version` (its sha256
          computed by the storage over every chunk; if `expected_sha256` differs:
          ChecksumMismatch, no version, the upload is removed), and `expires_at` is kept.
        """

    @abc.abstractmethod
    async def delete_resumable(self, device_id: str, upload_id: str) -> None:
        """Terminate an upload: its bytes and state are removed. ResumableNotFound if absent."""

    @abc.abstractmethod
    async def remove_expired_resumable(self, now: float) -> int:
        """Remove every upload (bytes and state) whose `expires_at` has passed; how many."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise StorageUnavailable unless the storage answers now."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles."""

    # direct uploads (presigned PUT straight to the object store) -------------------------------
    @abc.abstractmethod
    async def presign_direct_upload(
        self,
        device_id: str,
        staging_id: str,
        *,
        size: int,
        sha256: str,
        filename: str | None,
        content_type: str | None,
        expires_at: float,
    ) -> DirectUploadTicket:
        """Record what the client declared (in storage: any replica may complete it) and return
        a URL that lets the client write the staging object of `staging_id`, and nothing else,
        until `expires_at`.

        NotSupportedByStorage when the backend cannot hand out such URLs; PayloadTooLarge when
        `size` is beyond what one PUT to the store may carry.
        """

    @abc.abstractmethod
    async def complete_direct_upload(
        self, device_id: str, staging_id: str, version: str, *, now: float
    ) -> UploadInfo:
        """Turn the staged bytes into version `version`, once they are verified.

        - DirectUploadNotFound if the upload was never created or has expired at `now`;
        - DirectUploadNotReceived if nothing was staged (the upload stays open until expiry);
        - SizeMismatch or ChecksumMismatch if the bytes are not the declared ones: the staged
          object is deleted, nothing becomes visible, the upload stays open until expiry;
        - completed already: that version is returned again (its id differs from `version`).
        """

    @abc.abstractmethod
    async def remove_expired_direct_uploads(self, now: float) -> int:
        """Remove staged bytes and state of every direct upload expired at `now`; how many."""
