"""A package index's simple API: PEP 691 JSON or PEP 503 HTML, with credentials kept apart.

An index URL may carry basic-auth credentials (``https://user:token@mirror/simple``). They
are taken out of the URL at once and sent only as an ``Authorization`` header to that same
origin, so no URL that reaches a log line, an error or a progress event ever holds them.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx
import msgspec

from vox_control.store.sources.base import PullError
from vox_control.store.sources.retry import check_status

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
# JSON preferred; the HTML forms for indexes (and plain web servers) that only have those.
ACCEPT = f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01"
MAX_PAGE = 32 << 20  # bytes: PyPI's largest project pages are a few MB


class IndexFile(msgspec.Struct):
    """One file a project page lists."""

    filename: str
    url: str
    hashes: dict[str, str] = {}
    size: int | None = None
    yanked: bool | str = False


class Page(msgspec.Struct):
    """A project page: its files (URLs made absolute) and, from JSON pages, its versions."""

    files: list[IndexFile]
    versions: list[str] = []


class Index:
    """A package index: its URL without credentials, and the credentials apart."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.strip())
        netloc = parts.netloc.rpartition("@")[2]
        self._auth: httpx.BasicAuth | None = None
        if parts.username is not None or parts.password is not None:
            self._auth = httpx.BasicAuth(
                unquote(parts.username or ""), unquote(parts.password or "")
            )
        self.url = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
        self._origin = (parts.scheme.lower(), netloc.lower())

    def __repr__(self) -> str:
        return f"Index({self.url!r})"

    def auth_for(self, url: str) -> httpx.BasicAuth | None:
        """The index's credentials for a URL of the same origin (as pip does); else none."""
        parts = urlsplit(url)
        same = (parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()) == self._origin
        return self._auth if same else None


class _Anchors(HTMLParser):
    """The ``<a>`` elements of a PEP 503 page, and its ``<base href>`` if any."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def parse_html(text: str, page_url: str) -> Page:
    """PEP 503: one anchor per file, its digest in the URL fragment (``#sha256=...``)."""
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files = []
    for attrs, text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, _, fragment = urljoin(base, href).partition("#")
        name = unquote(urlsplit(url).path.rpartition("/")[2]) or text
        algo, _, value = fragment.partition("=")
        hashes = {algo.lower(): value.lower()} if algo and value else {}
        yanked = attrs.get("data-yanked")
        files.append(
            IndexFile(
                filename=name,
                url=url,
                hashes=hashes,
                yanked=False if yanked is None else yanked or True,
            )
        )
    return Page(files=files)


def parse_page(resp: httpx.Response, body: bytes, where: str) -> Page:
    """The page in whichever form the index answered; file URLs made absolute."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    page_url = str(resp.url)
    if ctype in (SIMPLE_JSON, "application/json"):
        try:
            page = msgspec.json.decode(body, type=Page)
        except msgspec.DecodeError as exc:
            raise PullError(f"{where}: not a valid PEP 691 page: {exc}") from exc
        for f in page.files:
            f.url = urljoin(page_url, f.url)
        return page
    if ctype in (SIMPLE_HTML, "text/html"):
        return parse_html(body.decode(resp.encoding or "utf-8", errors="replace"), page_url)
    raise PullError(
        f"{where}: the index speaks neither PEP 691 JSON nor PEP 503 HTML "
        f"(answered {ctype or 'no content type'})"
    )


def fetch_page(http: httpx.Client, index: Index, project: str, name: str) -> Page:
    """GET the project page of ``project`` (normalized); one try, errors as they come."""
    url = f"{index.url}/{project}/"
    where = f"{index.url} ({name})"
    with http.stream(
        "GET", url, headers={"Accept": ACCEPT}, auth=index.auth_for(url), follow_redirects=True
    ) as resp:
        if resp.status_code == 404:
            raise PullError(f"package {name} not found on {index.url}")
        check_status(resp, where)
        body = bytearray()
        for data in resp.iter_bytes():
            body += data
            if len(body) > MAX_PAGE:
                raise PullError(f"{where}: the project page is over {MAX_PAGE >> 20} MB")
    return parse_page(resp, bytes(body), where)
