"""Who may speak Omaha to this server: the optional shared secret and the request's media type.

update_engine (``omaha_request_action.cc`` → ``libcurl_http_fetcher.cc``) posts with exactly
``Content-Type: text/xml`` and no other header it lets you configure, so the secret rides in the
URL path, as Nebraska's ``-api-endpoint-suffix``: ``SERVER=https://host/v1/update/<secret>`` in
``update.conf``. Clients that can set headers may send ``X-Flotilla-Omaha-Secret`` instead.
Without the right secret the endpoint does not exist (404); a body that is not XML (a browser
form's ``text/plain``, a typeless ``Blob``) gets 415 before it is read.
"""

from __future__ import annotations

import hmac

SECRET_HEADER = "x-flotilla-omaha-secret"
XML_TYPES = frozenset({"text/xml", "application/xml"})


def is_omaha_path(path: str) -> bool:
    """``/v1/update``, ``/v1/update/`` and ``/v1/update/<secret>[/]``."""
    return path == "/v1/update" or path.startswith("/v1/update/")


def path_secret(path: str) -> str | bool | None:
    """The secret in an Omaha path: None for ``/v1/update[/]``, the suffix for
    ``/v1/update/<secret>[/]``, False for any other path (not an Omaha path)."""
    if path == "/v1/update" or path == "/v1/update/":
        return None
    if not path.startswith("/v1/update/"):
        return False
    rest = path[len("/v1/update/") :]
    if rest.endswith("/"):
        rest = rest[:-1]
    return rest if rest and "/" not in rest else False


def refusal(
    in_path: str | None, header_secret: str, content_type: str, secret: str
) -> tuple[int, str] | None:
    """(status, text) to answer instead of processing the request, or None to go on."""
    if secret:
        sent = in_path if in_path is not None else header_secret
        if not hmac.compare_digest(sent.encode(), secret.encode()):
            return 404, "not found\n"
    elif in_path is not None:
        return 404, "not found\n"
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in XML_TYPES:
        return 415, "Omaha requests must be text/xml or application/xml\n"
    return None
