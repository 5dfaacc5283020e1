"""The web UI on 127.0.0.1:10350: resources grouped by label, status, last build, errors, logs
streamed by incremental fetches, and a trigger button per resource.
"""

from __future__ import annotations

import threading
from importlib import resources as pkg_resources
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from flotilla.dev.runtime.engine import Engine


def create_app(engine: Engine) -> FastAPI:
    """Routes: ``/`` (the page), ``/api/resources``, ``/api/logs/{name}``, ``/api/trigger``."""
    app = FastAPI(title="flotilla dev", docs_url=None, redoc_url=None, openapi_url=None)
    page = pkg_resources.files("flotilla.dev").joinpath("ui.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/resources")
    def list_resources() -> dict[str, Any]:
        return {"tiltfile": str(engine.tiltfile), "resources": engine.snapshot()}

    @app.get("/api/logs/{name}")
    def logs(name: str, since: int = 0) -> dict[str, Any]:
        st = engine.state(name)
        if st is None:
            raise HTTPException(404, f"no resource {name}")
        lines, total = st.log_since(max(0, since))
        return {"lines": lines, "next": total}

    @app.post("/api/trigger/{name}")
    def trigger(name: str) -> dict[str, str]:
        if engine.state(name) is None:
            raise HTTPException(404, f"no resource {name}")
        engine.trigger(name)
        return {"triggered": name}

    return app


class UIServer:
    """uvicorn in a background thread; ``stop()`` asks it to exit and waits."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 10350) -> None:
        config = uvicorn.Config(create_app(engine), host=host, port=port, log_level="warning",
                                lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(target=self.server.run, name="dev-ui", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self.server.started or not self._thread.is_alive():
                break
            waited.wait(0.05)
        if not self.server.started:
            raise RuntimeError(f"the UI could not listen on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
