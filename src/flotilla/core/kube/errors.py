"""The Kubernetes API's errors as our own classes, mapped from HTTP statuses in one function.

Callers branch on the class (``except KubeNotFoundError``), never on a status number; the number
stays on the exception (``status``) for messages and logs. The table follows the API's own
``metav1.StatusReason`` values: AlreadyExists is a Conflict whose reason says the name is taken,
Gone is an expired watch or list continuation (relist), TooManyRequests carries the server's
``Retry-After`` (API priority and fairness, or an eviction a disruption budget refuses).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from lightkube import ApiError


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, message: str, status: int = 0, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait before trying again, when it said."""

    @property
    def retryable(self) -> bool:
        """Unreachable, throttled or server-side failures are worth another try; 4xx are not."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeUnauthorizedError(KubeError):
    """401: the credentials were refused (expired token, wrong certificate)."""


class KubeForbiddenError(KubeError):
    """403: authenticated, but RBAC (or an admission policy) does not allow this."""


class KubeNotFoundError(KubeError):
    """404: the object (or its namespace, or its kind) does not exist."""


class KubeConflictError(KubeError):
    """409: the object exists already or changed underneath us (stale resourceVersion)."""


class KubeAlreadyExistsError(KubeConflictError):
    """409 with reason AlreadyExists: a create found the name taken."""


class KubeGoneError(KubeError):
    """410: a watch or list continuation is too old; list again from scratch."""


class KubeInvalidError(KubeError):
    """422: refused by validation (schema, an immutable field, a failed JSON patch test)."""


class KubeTooManyRequestsError(KubeError):
    """429: throttled, or an eviction refused by a PodDisruptionBudget; see ``retry_after``."""


_BY_STATUS: dict[int, type[KubeError]] = {
    401: KubeUnauthorizedError,
    403: KubeForbiddenError,
    404: KubeNotFoundError,
    409: KubeConflictError,
    410: KubeGoneError,
    422: KubeInvalidError,
    429: KubeTooManyRequestsError,
}


def error_for_status(
    status: int, message: str, *, reason: str = "", retry_after: float | None = None
) -> KubeError:
    """The one mapping from an API answer to our hierarchy (pure: no I/O, no lightkube).

    ``reason`` is the Status object's ``reason`` (``AlreadyExists``, ``Conflict``...), which
    splits 409; any status not in the table (400, 405, 5xx...) is a plain :class:`KubeError`.
    """
    cls = _BY_STATUS.get(status, KubeError)
    if cls is KubeConflictError and reason == "AlreadyExists":
        cls = KubeAlreadyExistsError
    return cls(message, status, retry_after=retry_after)


def _retry_after(exc: httpx2.HTTPStatusError) -> float | None:
    """The server's wait hint: Status.details.retryAfterSeconds, else the Retry-After header."""
    if isinstance(exc, ApiError):
        details = exc.status.details
        if details is not None and details.retryAfterSeconds:
            return float(details.retryAfterSeconds)
    response: httpx2.Response | None = exc.response  # None on errors decoded from a watch
    header = response.headers.get("retry-after") if response is not None else None
    try:
        return float(header) if header else None
    except ValueError:
        return None  # an HTTP date: rare from the API server, and 'later' is all we need


def map_http_error(exc: httpx2.HTTPStatusError, action: str) -> KubeError:
    """Our error for a lightkube ``ApiError`` or a bare HTTP status error, naming ``action``."""
    if isinstance(exc, ApiError):
        response: httpx2.Response | None = exc.response  # None on errors decoded from a watch
        status = int(exc.status.code or (response.status_code if response is not None else 0))
        message = f"{action}: {exc.status.message or exc}"
        reason = str(exc.status.reason or "")
    else:
        status = exc.response.status_code
        message = f"{action}: HTTP {status}"
        reason = ""
    return error_for_status(status, message, reason=reason, retry_after=_retry_after(exc))


@contextmanager
def kube_errors(action: str) -> Iterator[None]:
    """Map lightkube and transport failures to our hierarchy, naming what we were doing.

    lightkube 1.x talks through ``httpx2`` (its fork of httpx), so those are the transport errors;
    its ``ApiError`` is an ``HTTPStatusError``, and its list iterator raises the bare kind.
    """
    try:
        yield
    except httpx2.HTTPStatusError as exc:
        raise map_http_error(exc, action) from exc
    except httpx2.TransportError as exc:
        raise KubeError(f"{action}: API server unreachable ({exc})") from exc
