"""SHA-256 whose state can be saved after a chunk and resumed by another process.

A resumable upload's chunks may arrive at different replicas, days apart; the service computes
the whole file's sha256 itself (clients are not trusted for it), so the running hash must
travel with the upload's state. hashlib cannot export its state, so this drives the same
OpenSSL that hashlib uses (libcrypto, loaded through ctypes) with a context whose bytes are
the state: `SHA256_CTX`, a plain struct whose layout OpenSSL's public header fixes. Same speed
as hashlib (both are OpenSSL); ctypes releases the GIL during each update. The saved state is
only meaningful to the same CPU architecture (replicas of one deployment share it).
"""

from __future__ import annotations

import ctypes
import ctypes.util

STATE_BYTES = 112


class _Context(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    lib = ctypes.CDLL(name)
    for function in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
        function.restype = ctypes.c_int
    lib.SHA256_Update.argtypes = [ctypes.POINTER(_Context), ctypes.c_char_p, ctypes.c_size_t]
    return lib


_libcrypto = _load()
assert ctypes.sizeof(_Context) == STATE_BYTES


class ResumableSha256:
    def __init__(self, state: bytes | None = None) -> None:
        if state is None:
            self._context = _Context()
            _libcrypto.SHA256_Init(ctypes.byref(self._context))
        else:
            if len(state) != STATE_BYTES:
                raise ValueError("not a saved sha256 state")
            self._context = _Context.from_buffer_copy(state)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data) if not isinstance(data, bytes) else data
        _libcrypto.SHA256_Update(ctypes.byref(self._context), chunk, len(chunk))

    def state(self) -> bytes:
        """The running hash, to be stored with the upload and resumed with ResumableSha256(s)."""
        return bytes(self._context)

    def hexdigest(self) -> str:
        final = _Context.from_buffer_copy(bytes(self._context))  # leaves this one usable
        out = ctypes.create_string_buffer(32)
        _libcrypto.SHA256_Final(out, ctypes.byref(final))
        return out.raw.hex()
