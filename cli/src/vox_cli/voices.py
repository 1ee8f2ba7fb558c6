"""`vox voices NAME`: a TTS model's voices, its default, and where OpenAI's voice names land."""

from __future__ import annotations

from urllib.parse import quote

from vox_cli.client import Host, Json, VoxClient
from vox_cli.table import print_json, print_rows


def voices(name: str, /, *, json: Json = False, host: Host = None) -> None:
    """List the voices of a text-to-speech model (`*` marks the default).

    Parameters
    ----------
    name
        A TTS model name (family:tag) or alias.
    """
    with VoxClient(host) as client:
        body = client.get(f"/api/voices?model={quote(name, safe=':')}")
    if json:
        return print_json(body)
    default = body.get("default")
    mapped: dict[str, list[str]] = {}
    for openai_name, voice in (body.get("openai_voices") or {}).items():
        mapped.setdefault(voice, []).append(openai_name)
    rows = [
        (
            f"{v['id']} *" if v["id"] == default else v["id"],
            v.get("language") or "",
            v.get("gender") or "",
            ", ".join(mapped.get(v["id"], [])),
        )
        for v in body["voices"]
    ]
    print_rows(("VOICE", "LANGUAGE", "GENDER", "OPENAI NAMES"), rows)
