"""Entry point: read ``FLOTILLA_FN_*``, ``PORT`` and ``OTEL_*`` from the environment, serve."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from .telemetry import process_start_time


def _user_location(exc: BaseException, source: Path) -> str:
    """``file:line: `` of the error in the function's own code, when it is there."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: "
    root = str(source.resolve())
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def main() -> None:
    """Serve the function in ``$FLOTILLA_FN_SOURCE`` on ``$PORT`` until SIGTERM."""
    start = process_start_time()
    import uvicorn

    from .app import FunctionApp, RuntimeConfig, load_function
    from .server import header_deadline_protocol
    from .telemetry import exporter_from_env, setup_json_logging

    env = dict(os.environ)
    config = RuntimeConfig.from_env(env)
    setup_json_logging(config.identity.name, env.get("FLOTILLA_FN_LOG_LEVEL", "INFO"))
    try:
        fn = load_function(config)
    except Exception as exc:
        where = _user_location(exc, config.source)
        print(
            f"cannot load function {config.handler}: {where}{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    app = FunctionApp(fn, config, exporter_from_env(env, config.identity), start_time=start)
    try:
        import httptools  # noqa: F401

        parser = "httptools"
    except ImportError:
        parser = "h11"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=env.get("HOST", "0.0.0.0"),
            port=int(env.get("PORT", "8080")),
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            http=header_deadline_protocol(parser, config.header_timeout),
            timeout_keep_alive=5,
            timeout_graceful_shutdown=max(1, int(config.grace)),
            server_header=False,
        )
    )
    server.run()


if __name__ == "__main__":
    main()
