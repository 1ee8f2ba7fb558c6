"""GET / and GET /web/<asset>: the playground page, served from the package's own files."""

from __future__ import annotations

import functools
from importlib import resources

from litestar import Response, get
from litestar.exceptions import NotFoundException

from vox_control.web import ASSETS

# The page talks only to this server and runs only its own scripts: an injected script or a
# foreign frame (clickjacking) gets nowhere. connect-src 'self' covers ws:// to the same host.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; media-src 'self' blob:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each load, so a page from an older server never talks to a newer API.
    "Cache-Control": "no-cache",
}


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("vox_control.web").joinpath(name).read_bytes()


def _serve(name: str) -> Response[bytes]:
    return Response(_asset(name), media_type=ASSETS[name], headers=_HEADERS)


@get("/", include_in_schema=False, sync_to_thread=False)
def playground() -> Response[bytes]:
    """The playground page (no token needed to load it; every API call it makes sends one)."""
    return _serve("index.html")


@get("/web/{name:str}", include_in_schema=False, sync_to_thread=False)
def playground_asset(name: str) -> Response[bytes]:
    """One of the page's listed files; any other name is 404, never a path on disk."""
    if name not in ASSETS or name == "index.html":
        raise NotFoundException(f"no such file: /web/{name}")
    return _serve(name)


WEB_ROUTES = [playground, playground_asset]

__all__ = ["WEB_ROUTES"]
