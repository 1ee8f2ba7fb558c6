"""`vox search`, `vox show`, `vox rm`, and the hf:// and directory forms of `vox pull`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from vox_cli.client import CLIError, Host, Json, VoxClient
from vox_cli.output import say
from vox_cli.table import print_json, print_rows, size


def is_source(name: str) -> bool:
    """``hf://owner/repo`` or a directory path, as opposed to a model name."""
    return name.startswith(("hf://", "/", "./", "../", "~")) or Path(name).is_dir()


def tar_stream(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    """An uncompressed tar of ``files`` (path, name in the archive), produced as it is sent."""
    import tarfile  # only `vox pull ./dir` needs it

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
    client: VoxClient,
    directory: Path,
    *,
    as_name: str,
    adapter: str,
    type: str | None,
    adapter_package: str | None = None,
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
    total = sum(path.stat().st_size for path, _ in files)
    say(f"sending {len(files)} files ({size(total)}) from {directory}")
    params = {"name": as_name, "adapter": adapter, "path": str(directory)}
    if type:
        params["type"] = type
    if adapter_package:
        params["adapter_package"] = adapter_package
    result = client.post_stream("/api/upload", tar_stream(files), "application/x-tar", params)
    return str(result["model"])


def _package_arg(spec: str | None) -> str | None:
    """A wheel or project path made absolute (the server takes no relative paths)."""
    if spec and (spec.startswith((".", "~")) or spec.endswith(".whl") or Path(spec).is_dir()):
        return str(Path(spec).expanduser().resolve())
    return spec


def register(
    client: VoxClient,
    source: str,
    *,
    as_name: str | None,
    adapter: str | None,
    type: str | None = None,
    revision: str | None = None,
    adapter_package: str | None = None,
    force: bool = False,
) -> tuple[str, bool]:
    """Register (hf://) or upload (a directory) ``source`` as ``as_name``; returns the name and
    whether the name is new (an entry a failed pull should take back)."""
    if not as_name or not adapter:
        raise CLIError(f"pulling {source} needs --adapter NAME and --as family:tag")
    if not source.startswith("hf://"):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise CLIError(f"{source} is not a directory")
        name = upload(
            client,
            path.resolve(),
            as_name=as_name,
            adapter=adapter,
            type=type,
            adapter_package=_package_arg(adapter_package),
        )
        return name, False
    body: dict[str, Any] = {"name": as_name, "source": source, "adapter": adapter}
    if type:
        body["type"] = type
    if revision:
        body["revision"] = revision
    if adapter_package:
        body["adapter_package"] = _package_arg(adapter_package)
    if force:
        body["force"] = True
    answer = client.post_json("/api/register", body)
    return str(answer["model"]), bool(answer.get("created"))


def suggest_tags(client: VoxClient, family: str) -> None:
    """`vox pull whisper`: raise an error that lists the family's tags (ollama pulls :latest;
    speech models have no such default, so the person picks one)."""
    found = client.get_params("/api/search", {"q": family})["models"]
    names = sorted(m["name"] for m in found if m["name"].split(":", 1)[0] == family)
    if not names:
        raise CLIError(f"no model family {family!r}; `vox search` lists the catalog")
    raise CLIError(f"{family} needs a tag: {', '.join(names)}")


def search(
    query: str | None = None,
    /,
    *,
    type: Annotated[Literal["stt", "tts"] | None, Parameter(help="Only stt or tts.")] = None,
    json: Json = False,
    host: Host = None,
) -> None:
    """Search the catalog by name, alias, adapter, description or language.

    Parameters
    ----------
    query
        Words to look for (default: the whole catalog).
    """
    params = {k: v for k, v in {"q": query, "type": type}.items() if v}
    with VoxClient(host) as client:
        body = client.get_params("/api/search", params)
    if json:
        return print_json(body)
    rows = [
        (
            m["name"],
            m["type"],
            m["adapter"],
            size(m.get("size_bytes") or 0),
            "yes" if m.get("installed") else "no",
            m.get("description", ""),
        )
        for m in body["models"]
    ]
    print_rows(("NAME", "TYPE", "ADAPTER", "SIZE", "INSTALLED", "DESCRIPTION"), rows)


def show(name: str, /, *, json: Json = False, host: Host = None) -> None:
    """Show a model: entry, source, files, size, adapter, sandbox, license, voices.

    Parameters
    ----------
    name
        A model name (family:tag) or alias.
    """
    with VoxClient(host) as client:
        m = client.post_json("/api/show", {"model": name})
    if json:
        return print_json(m)
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
        ("size", size(m.get("size") or 0)),
        ("sandbox", m.get("sandbox") or "not built"),
        ("loaded", "yes" if m.get("loaded") else "no"),
        ("license", m.get("license") or ""),
        ("sample rate", str(m.get("sample_rate") or "")),
        ("languages", ", ".join(m.get("languages") or [])),
        ("voices", ", ".join(m.get("voices") or [])),
        ("description", m.get("description") or ""),
    ]
    print_rows(("KEY", "VALUE"), [(k, v) for k, v in rows if v], header=False)
    if m.get("files"):
        say("")
        files = [(f["path"], size(f["size"]), f["sha256"][:16]) for f in m["files"]]
        print_rows(("FILE", "SIZE", "SHA256"), files)


def rm(name: str, /, *, host: Host = None) -> None:
    """Remove an installed model (unloading it first if it is loaded and idle).

    Parameters
    ----------
    name
        A model name (family:tag) or alias.
    """
    with VoxClient(host) as client:
        result = client.delete_json("/api/delete", {"model": name})
    note = " (unloaded first)" if result.get("unloaded") else ""
    say(f"removed {result['model']}{note}")
