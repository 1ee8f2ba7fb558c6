"""The playground page: its static files and the exact paths they are served under.

The page is plain HTML, CSS and JavaScript modules (no build step, no CDN: the server may run
offline). Its paths are listed here, once, because the auth middleware lets exactly these
through without a token: the browser must load the page before the user can type one.
"""

from __future__ import annotations

# Every file the page is made of, with its media type; nothing else in this folder is served.
ASSETS: dict[str, str] = {
    "index.html": "text/html",
    "app.css": "text/css",
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "models.js": "text/javascript",
    "speak.js": "text/javascript",
    "listen.js": "text/javascript",
    "captions.js": "text/javascript",
}

ASSET_PREFIX = "/web/"

# GET / (the page) and GET /web/<asset>: the only paths open without a token.
PAGE_PATHS = frozenset({"/", *(ASSET_PREFIX + name for name in ASSETS if name != "index.html")})

__all__ = ["ASSETS", "ASSET_PREFIX", "PAGE_PATHS"]
