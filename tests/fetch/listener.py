"""A recording HTTP listener on 127.0.0.1 for SSRF tests: every request it receives is kept,
and each path can answer as configured (body, redirect, slow trickle)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b"ok"
    status: int = 200
    content_type: str = "application/octet-stream"
    location: str | None = None
    trickle_seconds: float = 0.0  # pause between bytes


@dataclass
class Listener:
    port: int
    routes: dict[str, Route]
    seen: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def listener() -> Iterator[Listener]:
    routes: dict[str, Route] = {}
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            seen.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            route = routes.get(self.path, Route(b"not here", 404))
            self.send_response(route.status)
            if route.location:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", route.content_type)
            if not route.trickle_seconds:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            try:
                if route.trickle_seconds:
                    for b in route.body:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(route.trickle_seconds)
                else:
                    self.wfile.write(route.body)
            except OSError:
                pass

        do_GET = _answer
        do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Listener(int(server.server_address[1]), routes, seen)
    finally:
        server.shutdown()
        server.server_close()
