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

from flotilla.dev.plan.render import button_dict

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
        found = engine.result.buttons if engine.result else []
        return {
            "tiltfile": str(engine.tiltfile),
            "resources": engine.snapshot(),
            "buttons": [button_dict(b) for b in found],
        }

    @app.get("/api/logs/{name}")
    def logs(name: str, since: int = 0) -> dict[str, Any]:
        st = engine.state(name)
        if st is None:
            raise HTTPException(404, f"no resource {name}")
        lines, total = st.log_since(max(0, since))
        return {"lines": lines, "next": total}

    @app.get("/api/resources/{name}")
    def describe(name: str) -> dict[str, Any]:
        for item in engine.snapshot():
            if item["name"] == name:
                return dict(item)
        raise HTTPException(404, f"no resource {name}")

    @app.post("/api/enable/{name}")
    def enable(name: str) -> dict[str, str]:
        return toggle(name, True)

    @app.post("/api/disable/{name}")
    def disable(name: str) -> dict[str, str]:
        return toggle(name, False)

    def toggle(name: str, on: bool) -> dict[str, str]:
        if name not in engine.states:
            raise HTTPException(404, f"no resource {name}")
        engine.set_enabled(name, on)
        return {"enabled" if on else "disabled": name}

    @app.get("/api/buttons")
    def buttons() -> dict[str, Any]:
        found = engine.result.buttons if engine.result else []
        return {"buttons": [button_dict(b) for b in found]}

    @app.post("/api/buttons/{name}")
    def press(name: str) -> dict[str, str]:
        if not any(b.name == name for b in (engine.result.buttons if engine.result else [])):
            raise HTTPException(404, f"no button {name}")
        engine.press(name)
        return {"pressed": name}

    @app.get("/api/args")
    def get_args() -> dict[str, Any]:
        return {"args": list(engine.cfg.args)}

    @app.post("/api/args")
    def set_args(body: dict[str, Any]) -> dict[str, Any]:
        args = body.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise HTTPException(400, "args must be a list of strings")
        engine.set_args(args)
        return {"args": args}

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
        config = uvicorn.Config(
            create_app(engine),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
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
