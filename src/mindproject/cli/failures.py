"""One place that turns a failure into an exit code and one line on stderr, never a traceback.

| code | meaning |
|---|---|
| 0 | done (also: the reader of our output went away, e.g. `| head`) |
| 1 | the server said no (4xx, 5xx), or something unexpected |
| 2 | usage: bad arguments, a missing local file, no profile, a refused confirmation |
| 3 | the network gave up after retries (connection refused, DNS, timeouts, cut transfers) |
| 4 | verification failed: the bytes' sha256 or size is not what the server said |
"""

from __future__ import annotations

import os
import sys

from mindproject.errors import ConfigurationError, MindProjectError

OK = 0
REFUSED = 1
USAGE = 2
NETWORK = 3
VERIFICATION = 4
INTERRUPTED = 130


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (exit 2)."""


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line (without the `mindproject: ` prefix) for a failure."""
    # Only an SDK call raises the SDK's errors: `serve` and `token` never import it.
    if "mindproject.client" in sys.modules and (known := _client_failure(exc)):
        return known
    if isinstance(exc, UsageError | ConfigurationError):
        return USAGE, str(exc)
    if isinstance(exc, MindProjectError):
        return REFUSED, exc.message
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return USAGE, f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, PermissionError):
        return USAGE, f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    # Never a traceback for a user; a developer asks for one.
    return REFUSED, f"unexpected {type(exc).__name__}: {exc} (MINDPROJECT_DEBUG=1 shows where)"


def _client_failure(exc: BaseException) -> tuple[int, str] | None:
    from mindproject.client import ApiError, ClientError, NetworkError, VerificationError

    if isinstance(exc, ApiError):
        request = f" (request id {exc.request_id})" if exc.request_id else ""
        return REFUSED, f"server said {exc.status} {exc.code}: {exc.message}{request}"
    if isinstance(exc, VerificationError):
        return VERIFICATION, f"verification failed: {exc}"
    if isinstance(exc, NetworkError):
        return NETWORK, f"network: {exc}"  # the SDK says how many tries it made
    if isinstance(exc, ClientError):
        return REFUSED, str(exc)
    return None


def report(exc: BaseException) -> int:
    code, line = describe(exc)
    if os.environ.get("MINDPROJECT_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    print(f"mindproject: {line}", file=sys.stderr)
    return code


def quiet_broken_pipe() -> int:
    """The reader went away (`mindproject devices | head -1`): stop quietly. Python would
    complain again when it flushes stdout at exit, so point stdout at /dev/null first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return OK
