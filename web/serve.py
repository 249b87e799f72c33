"""`make web-serve`: serve the static site on 127.0.0.1 (the standard library's file server).

Module scripts and WebAssembly need their MIME types (text/javascript, application/wasm),
which Python's table lacks for .mjs: set them here. Nothing is cached, so a rebuilt site shows
at once.

Usage: python -m web.serve [--dir artifacts/web] [--port 8000]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import threading
from pathlib import Path
from typing import ClassVar

from core import contract

TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".json": "application/json",
         ".md": "text/markdown; charset=utf-8"}  # the model card: accented names shown as written


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def make_server(directory: str | Path, port: int = 8000, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server for `directory` on 127.0.0.1:`port` (0: a free port), not yet serving."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"{directory}/index.html not found: build the site first (make web)")
    handler = functools.partial(SiteHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.quiet = quiet
    return server


def serve_in_thread(directory: str | Path, port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving in a daemon thread (tests, benchmarks); returns the server and its URL."""
    server = make_server(directory, port, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve the static page on 127.0.0.1.")
    p.add_argument("--dir", default=contract.default_path("web"))
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)
    try:
        server = make_server(args.dir, args.port)
    except (FileNotFoundError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"Serving {args.dir} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
