"""A real HTTP server on 127.0.0.1 for tests: a request handler class served from a thread while in use."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]):
    """Serve `handler` on a free port of 127.0.0.1; yields the base URL, and stops the server on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
