"""A bare ASGI app whose lifespan sets state at startup and leaves a marker at shutdown."""

import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "started by lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                marker = os.environ.get("LIFECYCLE_MARKER")
                if marker:
                    with open(marker, "w") as f:
                        f.write("asgi shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"greeting": scope.get("state", {}).get("greeting")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
