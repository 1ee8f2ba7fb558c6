"""`vox search`, `vox show`, `vox rm`, and the hf:// and directory forms of `vox pull`."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter
from rich.console import Console
from rich.table import Table

from vox_cli.client import CLIError, VoxClient

console = Console()

Host = Annotated[str | None, Parameter(help="Server address; default $VOX_HOST or :11435.")]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def is_source(name: str) -> bool:
    """``hf://owner/repo`` or a directory path, as opposed to a model name."""
    return name.startswith(("hf://", "/", "./", "../", "~")) or Path(name).is_dir()


def tar_stream(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    """An uncompressed tar of ``files`` (path, name in the archive), produced as it is sent."""
    for path, rel in files:
        with path.open("rb") as src:
            st = os.fstat(src.fileno())
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            sent = 0
            while chunk := src.read(min(1 << 20, st.st_size - sent)):
                sent += len(chunk)
                yield chunk
            if sent != st.st_size:
                raise CLIError(f"{path} changed while it was sent")
        yield bytes(-st.st_size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)  # end of archive


def upload(
    client: VoxClient, directory: Path, *, as_name: str, adapter: str, type: str | None
) -> str:
    """Send the files of ``directory`` to the server as model ``as_name``; returns the name.

    The CLI reads the files as the user who runs it and sends them, so the server never opens
    a path a client names (see docs/security.md).
    """
    # Imported here: only this command needs the server package's file rules.
    from vox_control.store.sources.base import PullError
    from vox_control.store.sources.local import walk_files

    try:
        files = walk_files(directory)
    except PullError as exc:
        raise CLIError(str(exc)) from None
    size = sum(path.stat().st_size for path, _ in files)
    console.print(f"sending {len(files)} files ({_size(size)}) from {directory}")
    params = {"name": as_name, "adapter": adapter, "path": str(directory)}
    if type:
        params["type"] = type
    result = client.post_stream("/api/upload", tar_stream(files), "application/x-tar", params)
    return str(result["model"])


def register(
    client: VoxClient,
    source: str,
    *,
    as_name: str | None,
    adapter: str | None,
    type: str | None = None,
    revision: str | None = None,
) -> str:
    """Register (hf://) or upload (a directory) ``source`` as ``as_name``; returns the name."""
    if not as_name or not adapter:
        raise CLIError(f"pulling {source} needs --adapter NAME and --as family:tag")
    if not source.startswith("hf://"):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise CLIError(f"{source} is not a directory")
        return upload(client, path.resolve(), as_name=as_name, adapter=adapter, type=type)
    body: dict[str, Any] = {"name": as_name, "source": source, "adapter": adapter}
    if type:
        body["type"] = type
    if revision:
        body["revision"] = revision
    return str(client.post_json("/api/register", body).json()["model"])


def search(
    query: str | None = None,
    /,
    *,
    type: Annotated[Literal["stt", "tts"] | None, Parameter(help="Only stt or tts.")] = None,
    host: Host = None,
) -> None:
    """Search the catalog by name, alias, adapter, description or language."""
    params = {k: v for k, v in {"q": query, "type": type}.items() if v}
    with VoxClient(host) as client:
        models = client.get_params("/api/search", params)["models"]
    table = Table("NAME", "TYPE", "ADAPTER", "SIZE", "INSTALLED", "DESCRIPTION", box=None)
    for m in models:
        table.add_row(
            m["name"],
            m["type"],
            m["adapter"],
            _size(m.get("size_bytes") or 0),
            "yes" if m.get("installed") else "",
            m.get("description", ""),
        )
    console.print(table)


def show(name: str, /, *, host: Host = None) -> None:
    """Show a model: entry, source, files, size, adapter, sandbox, license, voices."""
    with VoxClient(host) as client:
        m = client.post_json("/api/show", {"model": name}).json()
    source = m["source"]
    pkgs = ", ".join(f"{p['name']}=={p['version']}" for p in source.get("packages", []))
    if source["kind"] == "hf":
        where = f"hf://{source['repo']}@{source.get('revision', 'main')}"
    elif source["kind"] == "pypi":
        where = f"pypi {pkgs}"
    else:
        where = str(source.get("path", source["kind"]))
    rows = [
        ("name", m["name"]),
        ("aliases", ", ".join(m.get("aliases") or [])),
        ("type", m["type"]),
        ("adapter", m["adapter"]),
        ("source", where),
        ("revision", m.get("revision") or ""),
        ("origin", m.get("origin", "")),
        ("installed", m.get("path") or "no"),
        ("size", _size(m.get("size") or 0)),
        ("sandbox", m.get("sandbox") or "not built"),
        ("loaded", "yes" if m.get("loaded") else "no"),
        ("license", m.get("license") or ""),
        ("sample rate", str(m.get("sample_rate") or "")),
        ("languages", ", ".join(m.get("languages") or [])),
        ("voices", ", ".join(m.get("voices") or [])),
        ("description", m.get("description") or ""),
    ]
    table = Table(show_header=False, box=None)
    for key, value in rows:
        if value:
            table.add_row(f"[bold]{key}[/bold]", value)
    console.print(table)
    if m.get("files"):
        files = Table("FILE", "SIZE", "SHA256", box=None)
        for f in m["files"]:
            files.add_row(f["path"], _size(f["size"]), f["sha256"][:16])
        console.print(files)


def rm(name: str, /, *, host: Host = None) -> None:
    """Remove an installed model (unloading it first if it is loaded and idle)."""
    with VoxClient(host) as client:
        result = client.delete_json("/api/delete", {"model": name})
    note = " (unloaded first)" if result.get("unloaded") else ""
    console.print(f"[green]removed {result['model']}[/green]{note}")
