"""`vox voices NAME`: a TTS model's voices, its default, and where OpenAI's voice names land."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from cyclopts import Parameter
from rich.console import Console
from rich.table import Table

from vox_cli.client import VoxClient


def voices(
    name: str,
    /,
    *,
    host: Annotated[str | None, Parameter(help="Server address (host, host:port or URL).")] = None,
) -> None:
    """List the voices of a text-to-speech model (`*` marks the default)."""
    with VoxClient(host) as client:
        body = client.get(f"/api/voices?model={quote(name, safe=':')}")
    default = body.get("default")
    mapped: dict[str, list[str]] = {}
    for openai_name, voice in (body.get("openai_voices") or {}).items():
        mapped.setdefault(voice, []).append(openai_name)
    table = Table("VOICE", "LANGUAGE", "GENDER", "OPENAI NAMES", box=None)
    for v in body["voices"]:
        vid = v["id"]
        table.add_row(
            f"{vid} *" if vid == default else vid,
            v.get("language") or "",
            v.get("gender") or "",
            ", ".join(mapped.get(vid, [])),
        )
    Console().print(table)
