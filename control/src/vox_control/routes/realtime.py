"""WS /v1/realtime/tts, /v1/realtime/stt and / : the Pipecat local-server protocols."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from vox_control.inference import Kind, resolve
from vox_control.services import Services
from vox_control.sessions.channel import Channel
from vox_control.sessions.pipecat_stt import SttRealtime
from vox_control.sessions.pipecat_tts import TtsRealtime
from vox_control.sessions.pipecat_wire import error_event, refusal


async def _serve(socket: WebSocket[Any, Any, Any], services: Services, kind: Kind | None) -> None:
    await socket.accept()
    channel = Channel(socket)
    requested = socket.query_params.get("model") or None
    try:
        if kind is None:
            # `/` serves the realtime default, whose type picks the protocol: the peers'
            # socket clients always ask for `/`, so that path must work without a query.
            requested = requested or services.settings.realtime_model or None
        model = resolve(services, requested, kind)  # once: the session gets it
    except Exception as exc:
        refused = refusal(exc)
        await channel.send_event(error_event(refused.code, refused.message))
        await channel.close(refused.close_code, refused.code)
        return
    if model.kind == "stt":
        await SttRealtime(channel, services, model).run()
    else:
        await TtsRealtime(channel, services, model).run()


@websocket("/v1/realtime/tts")
async def realtime_tts(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """pipecat-local-tts-server protocol for ?model= (default: the default TTS model)."""
    await _serve(socket, services, "tts")


@websocket("/v1/realtime/stt")
async def realtime_stt(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """pipecat-local-stt-server protocol for ?model= (default: the default STT model)."""
    await _serve(socket, services, "stt")


@websocket("/")
async def realtime_root(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """The protocol of ?model= or --realtime-model (default: the default TTS model)."""
    await _serve(socket, services, None)


REALTIME_ROUTES = [realtime_tts, realtime_stt, realtime_root]
