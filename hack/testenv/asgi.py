"""Our FastAPI apps served for real: uvicorn on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hack.testenv.procs import ServerStartError


@contextmanager
def serve_app(app: Any, *, port: int | None = None, name: str = "test server", start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL. Without ``port`` the kernel picks one
    as uvicorn binds (no race with another process); leaves the process's logging configuration alone."""
    import uvicorn  # imported here: the GPU machine's tests need no server

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port or 0, log_config=None, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServerStartError(f"{name} on 127.0.0.1:{port or 'a free port'} did not start within {start_timeout_s:.0f}s")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
