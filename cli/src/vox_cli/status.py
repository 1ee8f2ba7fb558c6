"""`vox status`: the realtime handshake and a server.status snapshot, over TCP or a Unix socket."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect, unix_connect

from vox_cli.client import CLIError, server_url

console = Console()


def _open(host: str | None, socket: str | None, path: str, timeout: float) -> ClientConnection:
    headers = {}
    if key := os.environ.get("VOX_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    where = f"unix:{socket}" if socket else server_url(host)
    try:
        if socket:
            return unix_connect(
                os.path.expanduser(socket),
                f"ws://localhost{path}",
                additional_headers=headers,
                open_timeout=timeout,
                max_size=None,
            )
        url = server_url(host).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return connect(url + path, additional_headers=headers, open_timeout=timeout, max_size=None)
    except InvalidStatus as exc:
        code = exc.response.status_code
        hint = " (set VOX_API_KEY)" if code == 401 else ""
        raise CLIError(f"{where} refused the handshake: HTTP {code}{hint}") from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise CLIError(f"nothing answers at {where}: {exc}") from None


def _event(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    try:
        message = ws.recv(timeout=timeout)
    except TimeoutError:
        raise CLIError(f"the server sent nothing for {timeout:g} s") from None
    except WebSocketException as exc:
        raise CLIError(f"the connection closed: {exc}") from None
    event: dict[str, Any] = json.loads(message)
    if event.get("type") == "error":
        raise CLIError(f"the server refused the session: {event['error']['message']}")
    return event


def probe(
    host: str | None, socket: str | None, model: str | None, kind: str, timeout: float
) -> dict[str, Any]:
    """Connect, read server.hello, ask for server.status, close: both events, as sent."""
    path = f"/v1/realtime/{kind}"
    if model:
        path += "?" + urllib.parse.urlencode({"model": model})
    with _open(host, socket, path, timeout) as ws:
        hello = _event(ws, timeout)
        if hello.get("type") != "server.hello":
            raise CLIError(f"expected server.hello, got {hello.get('type')!r}")
        ws.send(json.dumps({"type": "server.status"}))
        while (status := _event(ws, timeout)).get("type") != "server.status":
            pass  # the STT protocol sends session.created events first
    return {"hello": hello, "status": status}


def status(
    *,
    host: Annotated[str | None, Parameter(help="Server address (default $VOX_HOST).")] = None,
    socket: Annotated[str | None, Parameter(help="Probe this Unix socket instead.")] = None,
    model: Annotated[str | None, Parameter(help="Model to handshake with.")] = None,
    stt: Annotated[bool, Parameter(help="Use the STT protocol (default TTS).")] = False,
    json_: Annotated[
        bool, Parameter(name="--json", help="Print hello and status as JSON.")
    ] = False,
    timeout: Annotated[float, Parameter(help="Seconds to wait for each step.")] = 30.0,
) -> None:
    """Handshake with the realtime protocol and print the server's status; fails if none."""
    result = probe(host, socket, model, "stt" if stt else "tts", timeout)
    if json_:
        print(json.dumps(result, indent=2))
        return
    hello, snap = result["hello"], result["status"]
    vox = snap.get("vox") or {}
    audio = hello.get("audio") or {}
    console.print(f"server     {'unix:' + socket if socket else server_url(host)}")
    console.print(f"vox        {vox.get('version', '?')} (pid {snap.get('pid')})")
    console.print(f"backend    {hello['backend']['name']}  model {hello['backend']['model']}")
    console.print(f"audio      {audio.get('format')} {audio.get('rate')} Hz mono")
    caps = hello.get("capabilities") or {}
    if "voice_count" in caps:
        console.print(f"voices     {caps['voice_count']}: {', '.join(snap.get('voices') or [])}")
    console.print(f"queue      {snap.get('queue_depth')}")
    console.print(f"uptime     {vox.get('uptime_seconds', 0):.0f} s")
    for name, server in (vox.get("sessions") or {}).items():
        sessions = server.get("sessions") or []
        console.print(f"{name:<10} {server.get('listening')}  {len(sessions)} session(s)")
        for s in sessions:
            console.print(f"  {s['id']:<12} {s['state']:<13} {s.get('model') or '-'}")
    models = vox.get("models") or []
    console.print(f"loaded     {len(models)} model(s)")
    for m in models:
        console.print(
            f"  {m['name']:<32} {m['type']}  {m['sample_rate']} Hz  "
            f"in flight {m['in_flight']}  queued {m['queued']}"
        )
