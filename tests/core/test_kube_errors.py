"""The one mapping from Kubernetes API answers to our error classes, case by case."""

from __future__ import annotations

import httpx2
import pytest
from lightkube import ApiError

from flotilla.core.kube import (
    KubeAlreadyExistsError,
    KubeConflictError,
    KubeError,
    KubeForbiddenError,
    KubeGoneError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeTooManyRequestsError,
    KubeUnauthorizedError,
    error_for_status,
    kube_errors,
)

CASES = [
    # status, reason, class, retryable
    (0, "", KubeError, True),
    (400, "BadRequest", KubeError, False),
    (401, "Unauthorized", KubeUnauthorizedError, False),
    (403, "Forbidden", KubeForbiddenError, False),
    (404, "NotFound", KubeNotFoundError, False),
    (405, "MethodNotAllowed", KubeError, False),
    (409, "Conflict", KubeConflictError, False),
    (409, "AlreadyExists", KubeAlreadyExistsError, False),
    (409, "", KubeConflictError, False),
    (410, "Expired", KubeGoneError, False),
    (415, "UnsupportedMediaType", KubeError, False),
    (422, "Invalid", KubeInvalidError, False),
    (429, "TooManyRequests", KubeTooManyRequestsError, True),
    (500, "InternalError", KubeError, True),
    (503, "ServiceUnavailable", KubeError, True),
    (504, "Timeout", KubeError, True),
]


@pytest.mark.parametrize(("status", "reason", "cls", "retryable"), CASES)
def test_each_status_maps_to_one_class(
    status: int, reason: str, cls: type[KubeError], retryable: bool
) -> None:
    err = error_for_status(status, "get thing: boom", reason=reason)
    assert type(err) is cls
    assert err.status == status
    assert err.retryable is retryable
    assert str(err) == "get thing: boom"


def test_already_exists_is_still_a_conflict() -> None:
    assert isinstance(error_for_status(409, "x", reason="AlreadyExists"), KubeConflictError)


def _api_error(
    status: int, reason: str, *, retry_after_seconds: int | None = None, header: str | None = None
) -> ApiError:
    request = httpx2.Request("POST", "https://api.example/api/v1/namespaces/a/pods")
    body: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": status,
        "reason": reason,
        "message": f"said {reason}",
    }
    if retry_after_seconds is not None:
        body["details"] = {"retryAfterSeconds": retry_after_seconds}
    headers = {"Retry-After": header} if header is not None else {}
    response = httpx2.Response(status, json=body, headers=headers, request=request)
    return ApiError(request=request, response=response)


@pytest.mark.parametrize(("status", "reason", "cls", "retryable"), [c for c in CASES if c[0] != 0])
def test_lightkube_errors_map_through_the_same_table(
    status: int, reason: str, cls: type[KubeError], retryable: bool
) -> None:
    with pytest.raises(KubeError) as info, kube_errors("create Pod a/b"):
        raise _api_error(status, reason)
    assert type(info.value) is cls
    assert info.value.retryable is retryable
    assert str(info.value) == f"create Pod a/b: said {reason}"
    assert isinstance(info.value.__cause__, ApiError)  # chained, for the traceback


@pytest.mark.parametrize(
    ("details", "header", "expected"),
    [
        (7, None, 7.0),  # the Status object's details win
        (None, "3", 3.0),  # else the Retry-After header
        (None, "Wed, 21 Oct 2026 07:28:00 GMT", None),  # a date: no number to give
        (None, None, None),
    ],
)
def test_too_many_requests_carries_the_servers_wait(
    details: int | None, header: str | None, expected: float | None
) -> None:
    with pytest.raises(KubeTooManyRequestsError) as info, kube_errors("evict pod a/b"):
        raise _api_error(429, "TooManyRequests", retry_after_seconds=details, header=header)
    assert info.value.retry_after == expected


def test_errors_decoded_from_a_watch_stream_have_no_response() -> None:
    from lightkube.models.meta_v1 import Status

    with pytest.raises(KubeGoneError) as info, kube_errors("watch pods"):
        raise ApiError(status=Status(code=410, reason="Expired", message="too old"))
    assert info.value.status == 410 and info.value.retry_after is None


def test_bare_http_status_errors_map_too() -> None:
    request = httpx2.Request("GET", "https://api.example/apis/x/v1/things")
    response = httpx2.Response(404, text="404 page not found", request=request)
    with (
        pytest.raises(KubeNotFoundError, match=r"^list Thing: HTTP 404$"),
        kube_errors("list Thing"),
    ):
        raise httpx2.HTTPStatusError("not found", request=request, response=response)


def test_an_unreachable_server_is_retryable_with_status_zero() -> None:
    with pytest.raises(KubeError) as info, kube_errors("get Node n"):
        raise httpx2.ConnectError("connection refused")
    assert type(info.value) is KubeError
    assert info.value.status == 0 and info.value.retryable
    assert "API server unreachable" in str(info.value)


def test_other_exceptions_pass_through_unmapped() -> None:
    with pytest.raises(ValueError, match="not ours"), kube_errors("anything"):
        raise ValueError("not ours")
