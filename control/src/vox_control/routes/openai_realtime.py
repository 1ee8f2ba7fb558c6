"""WS /v1/realtime?intent=transcription: OpenAI Realtime transcription sessions (capped)."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from vox_control.errors import BadRequest, VoxError, classify
from vox_control.renderers import WS_TRY_LATER, oai_realtime_error
from vox_control.services import Services
from vox_control.sessions.channel import Channel
from vox_control.sessions.oai_realtime_events import Limits
from vox_control.sessions.openai_realtime import OpenAIRealtimeSession

MAX_SESSIONS = 16  # concurrent sessions; one more is refused with session_limit and 1013
LIMITS = Limits()  # per session: input buffer, idle timeout
_active = 0


class SessionLimit(VoxError):
    status = 429
    type = "server_error"
    code = "session_limit"


@websocket("/v1/realtime")
async def openai_realtime(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """OpenAI Realtime API, transcription intent: the openai SDK's ``client.realtime.connect``."""
    global _active
    await socket.accept()
    channel = Channel(socket)
    try:
        if socket.query_params.get("intent") != "transcription":
            raise BadRequest(
                "Vox serves transcription sessions only: connect with ?intent=transcription",
                param="intent",
            )
        if _active >= MAX_SESSIONS:
            raise SessionLimit(f"{MAX_SESSIONS} realtime sessions are open; try again later")
        session = OpenAIRealtimeSession(channel, services, LIMITS)
    except Exception as exc:
        problem = classify(exc)
        await channel.send_event(oai_realtime_error(problem, None))
        await channel.close(WS_TRY_LATER if problem.status == 429 else 1008, problem.code)
        return
    _active += 1
    try:
        await session.run()
    finally:
        _active -= 1
