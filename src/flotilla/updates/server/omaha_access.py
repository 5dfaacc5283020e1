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

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

SECRET_HEADER = "x-flotilla-omaha-secret"
XML_TYPES = frozenset({"text/xml", "application/xml"})


def is_omaha_path(path: str) -> bool:
    """``/v1/update``, ``/v1/update/`` and ``/v1/update/<secret>[/]``."""
    return path == "/v1/update" or path.startswith("/v1/update/")


def refusal(request: Request, secret: str) -> Response | None:
    """The answer to send instead of processing the request, or None to go on."""
    in_path = request.path_params.get("secret")
    if secret:
        sent = in_path if in_path is not None else request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(sent.encode(), secret.encode()):
            return PlainTextResponse("not found\n", 404)
    elif in_path is not None:
        return PlainTextResponse("not found\n", 404)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in XML_TYPES:
        return PlainTextResponse("Omaha requests must be text/xml or application/xml\n", 415)
    return None
