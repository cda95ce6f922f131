"""Serve an ASGI app with uvicorn on loopback in a background thread (tests, FakeGitHub)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ghapp_celery.logging_filters import redact_access_log

__all__ = ["serve"]


@contextmanager
def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
    access_log: bool = False,
) -> Iterator[str]:
    """Run ``app`` under uvicorn until the block ends; yield its base URL (``http://host:port``).

    Port 0 lets the OS choose a free port, so parallel tests never collide. uvicorn installs no
    signal handlers outside the main thread, so the server can live in a daemon thread.
    ``access_log=True`` logs each request on ``uvicorn.access`` (at INFO), with OAuth codes,
    states and tokens in query strings redacted (ghapp_celery.logging_filters).
    """
    import uvicorn  # here: the pytest plugin imports the kit in every pytest run

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info" if access_log else "warning",
        lifespan="on",
        access_log=access_log,
    )
    redact_access_log()  # after Config, which applies uvicorn's logging configuration
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started serving")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"uvicorn did not start within {startup_timeout} s")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
