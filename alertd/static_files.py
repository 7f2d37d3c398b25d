"""alertd's own web files — the public map's and console's scripts and styles, and the vendored
Leaflet — served by alertd itself.

alertd runs on LGWAN, cut off from the internet: a page that pulled a script, a font or a
tile from a CDN would be blank at the desk. So every file a page needs ships inside the
package (``alertd/static/``, ``alertd/static/vendor/``) and is read once, at start, into
memory: a disaster-day flood of map visitors costs a dictionary lookup and, with the ETag,
mostly a 304. The names are fixed at start too, so no request can name a file outside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web

from alertd.errors import NotFound

_TYPES = {
    ".js": ("text/javascript", "utf-8"),
    ".css": ("text/css", "utf-8"),
    ".txt": ("text/plain", "utf-8"),
    ".md": ("text/markdown", "utf-8"),
    ".svg": ("image/svg+xml", None),
    ".png": ("image/png", None),
}
# The files change only with a new release of alertd; an hour of caching still lets a fix
# reach the desks the same day, and the ETag makes each later check a 304.
CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    charset: str | None
    etag: str


def _read(folder: Traversable) -> dict[str, StaticFile]:
    out: dict[str, StaticFile] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if not item.is_file() or suffix not in _TYPES:
            continue
        body = item.read_bytes()
        content_type, charset = _TYPES[suffix]
        out[item.name] = StaticFile(body, content_type, charset, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return out


_ROOT = files("alertd") / "static"
FILES: dict[str, StaticFile] = _read(_ROOT)
VENDOR: dict[str, StaticFile] = _read(_ROOT / "vendor")


def _answer(request: web.Request, found: StaticFile | None) -> web.Response:
    if found is None:
        raise NotFound(f"alertd has no web file {request.match_info['name']!r}.")
    headers = {"ETag": found.etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if found.etag in {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=found.content_type, charset=found.charset, headers=headers)


async def get_static(request: web.Request) -> web.Response:
    return _answer(request, FILES.get(request.match_info["name"]))


async def get_vendor(request: web.Request) -> web.Response:
    return _answer(request, VENDOR.get(request.match_info["name"]))


# Both are reads anyone may make (the public map needs them): limited per address like the
# other public reads, so a loop fetching them cannot crowd out the desk.
get_static.alertd_public = True  # type: ignore[attr-defined]
get_vendor.alertd_public = True  # type: ignore[attr-defined]
