"""The widget's files, served by the daemon: `widget.js` (short cache, the one tag a shop
adds) and every file at `v/<version>/<file>` (cached for a year: the version is a hash of
the files, so a new widget is a new URL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
FILES = {p.name: p.read_bytes() for p in sorted(HERE.iterdir()) if p.suffix in TYPES}
VERSION = hashlib.sha256(b"".join(FILES[n] for n in sorted(FILES))).hexdigest()[:12]
PLACEHOLDER = b"__WIDGET_VERSION__"  # widget.js finds its CSS by it


def _body(name: str) -> bytes:
    return FILES[name].replace(PLACEHOLDER, VERSION.encode())


def _serve(request: web.Request, name: str, cache: str) -> web.Response:
    etag = f'"{VERSION}"'
    headers = {"Cache-Control": cache, "ETag": etag, "Access-Control-Allow-Origin": "*"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    suffix = Path(name).suffix
    return web.Response(body=_body(name), headers={**headers, "Content-Type": TYPES[suffix]})


async def latest(request: web.Request) -> web.Response:
    return _serve(request, "widget.js", "public, max-age=300")


async def versioned(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if request.match_info["version"] != VERSION or name not in FILES:
        raise web.HTTPNotFound(text="no such widget file or version")
    return _serve(request, name, "public, max-age=31536000, immutable")
