"""The one error hierarchy of MindProject.

Every failure the service can report is a subclass of `MindProjectError` with a stable machine
`code` and the HTTP `status` it is answered with. Storage and stream code raise these without
knowing anything of HTTP requests; `mindproject.api.errors` renders them as the one JSON shape
`{"error": {"code", "message", "request_id"}}`.
"""

from __future__ import annotations


class MindProjectError(Exception):
    """Base class. `status` is the HTTP status the API answers with."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        # Machine-readable facts the client needs to recover (e.g. the offset to resume at).
        self.details = details


class ConfigurationError(MindProjectError):
    """A setting is wrong; start-up stops with this message."""

    code = "configuration_error"


# 400 family: the request itself is wrong.
class BadRequest(MindProjectError):
    status = 400
    code = "bad_request"


class InvalidDeviceId(BadRequest):
    code = "invalid_device_id"


class InvalidVersionId(BadRequest):
    code = "invalid_version_id"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class MissingFileField(BadRequest):
    code = "missing_file_field"


class MalformedBody(BadRequest):
    code = "malformed_body"


class ChecksumMismatch(BadRequest):
    code = "checksum_mismatch"


class IncompleteBody(BadRequest):
    code = "incomplete_body"


class MalformedRequest(BadRequest):
    """The HTTP framing itself is broken (answered by the protocol, before the app)."""

    code = "malformed_request"


class Unauthorized(MindProjectError):
    """No credentials, or credentials that do not verify (bad, expired, revoked)."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        # RFC 6750: a request without credentials gets the bare challenge, without error code.
        challenge = 'Bearer realm="mindproject"' + (f', error="{error}"' if error else "")
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(MindProjectError):
    """Valid credentials that do not allow this call."""

    status = 403
    code = "forbidden"


class NotFound(MindProjectError):
    status = 404
    code = "not_found"


class DeviceNotFound(NotFound):
    code = "device_not_found"


class UploadNotFound(NotFound):
    code = "upload_not_found"


class RequestTimeout(MindProjectError):
    status = 408
    code = "request_timeout"


class IdempotencyConflict(MindProjectError):
    """An Idempotency-Key already used for different bytes."""

    status = 409
    code = "idempotency_conflict"


class LengthRequired(MindProjectError):
    status = 411
    code = "length_required"


class PayloadTooLarge(MindProjectError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MindProjectError):
    status = 415
    code = "unsupported_media_type"


class RangeNotSatisfiable(MindProjectError):
    status = 416
    code = "range_not_satisfiable"


class TooManyRequests(MindProjectError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class HeadersTooLarge(MindProjectError):
    status = 431
    code = "headers_too_large"


# Storage-side failures.
class UnsupportedTransferCoding(MindProjectError):
    """A transfer coding other than chunked (RFC 9112 section 6.1: 501)."""

    status = 501
    code = "unsupported_transfer_coding"


# Resumable uploads (tus 1.0, docs/api.md).
class ResumableNotFound(NotFound):
    """No such resumable upload: never created, terminated, or expired."""

    code = "resumable_upload_not_found"


class OffsetMismatch(MindProjectError):
    """A chunk sent for an offset other than the upload's: the details say where to resume."""

    status = 409
    code = "offset_mismatch"

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(
            message, headers={"Upload-Offset": str(offset)}, details={"offset": offset}
        )
        self.offset = offset


class UploadBusy(MindProjectError):
    """Another request is appending to this upload right now (tus servers answer 423)."""

    status = 423
    code = "upload_busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        # When trying again can succeed: at once for a lock held by a live request, or once
        # a dead replica's claim may be taken over.
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class ChunkChecksumMismatch(MindProjectError):
    """A chunk's Upload-Checksum did not match its bytes: nothing was appended (tus: 460)."""

    status = 460
    code = "checksum_mismatch"


class TusVersionUnsupported(MindProjectError):
    status = 412
    code = "tus_version_unsupported"


class StorageError(MindProjectError):
    """The storage failed in a way that is not the client's fault."""

    status = 500
    code = "storage_error"


class StorageUnavailable(StorageError):
    """The storage cannot be reached now; retrying later may work."""

    status = 503
    code = "storage_unavailable"


class CommitOutcomeUnknown(StorageUnavailable):
    """The index went away after the upload's commit was sent: it may have been stored. A retry
    with the same Idempotency-Key answers the stored version, or stores it once."""

    code = "commit_outcome_unknown"


class InsufficientStorage(StorageError):
    """The storage is full."""

    status = 507
    code = "insufficient_storage"


class ClientDisconnected(MindProjectError):
    """The client went away mid-request; nobody is left to answer."""

    status = 499
    code = "client_disconnected"


# Direct-to-S3 uploads (presigned URLs, docs/api.md).
class NotSupportedByStorage(MindProjectError):
    """The configured storage backend cannot do this (e.g. presign a URL): a server-side limit,
    not the client's fault, and retrying will not help."""

    status = 501
    code = "not_supported_by_storage"


class DirectUploadNotFound(NotFound):
    """No such direct upload: never created, or expired."""

    code = "direct_upload_not_found"


class DirectUploadNotReceived(BadRequest):
    """Completion asked for, but nothing was PUT to the presigned URL (or not yet)."""

    code = "direct_upload_not_received"


class SizeMismatch(BadRequest):
    """The bytes received are not as many as were declared."""

    code = "size_mismatch"
