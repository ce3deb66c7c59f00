"""A release-asset server on 127.0.0.1 for download tests: real HTTP with Range support, request
counting, and faults on demand (a body cut short on the first or every response, slow bodies)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class AssetServer:
    """Serves `files` ({name: bytes}) at http://127.0.0.1:PORT/NAME until closed.

    cut_first: names whose first response stops halfway (the connection drops); cut_always: every
    response stops halfway; slow_s: seconds spread over each body (so concurrent clients overlap).
    """

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.requests: Counter[str] = Counter()
        self.ranges: list[str | None] = []
        self.cut_first: set[str] = set()
        self.cut_always: set[str] = set()
        self.slow_s = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_file(self, path: Path, name: str | None = None) -> str:
        self.files[name or path.name] = path.read_bytes()
        return f"{self.url}/{name or path.name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                with server._lock:
                    server.requests[name] += 1
                    first = server.requests[name] == 1
                    server.ranges.append(self.headers.get("Range"))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                asked = self.headers.get("Range")
                if asked and asked.startswith("bytes=") and asked.endswith("-"):
                    start = int(asked[6:-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                cut = name in server.cut_always or (first and name in server.cut_first)
                sent = part[: len(part) // 2] if cut else part
                self._send_slowly(sent)
                if cut:
                    self.close_connection = True

            def _send_slowly(self, data: bytes) -> None:
                pieces = 10 if server.slow_s else 1
                step = max(1, -(-len(data) // pieces))
                for i in range(0, len(data), step):
                    self.wfile.write(data[i : i + step])
                    self.wfile.flush()
                    if server.slow_s:
                        time.sleep(server.slow_s / pieces)

        return Handler
