"""Drives the published pipecat clients (run by a Python 3.12 venv); prints one JSON result.

Not a test module: tests/realtime/peers.py runs it as a script with the peer interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any


def _client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"auth_token": args.token or None}
    if args.socket:
        kwargs["socket_path"] = args.socket
    else:
        kwargs["uri"] = args.uri
    return kwargs


async def _until(client: Any, stop: set[str], log: list[dict[str, Any]]) -> dict[str, Any]:
    async for event in client.events():
        log.append(event)
        if event["type"] in stop:
            return event
    raise RuntimeError(f"connection closed before {stop}")


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k != "audio"}
    if event["type"] == "response.audio.delta":
        out["audio_bytes"] = len(base64.b64decode(event["audio"]))
    return out


async def tts(args: argparse.Namespace) -> dict[str, Any]:
    from tts_server.client import TTSClient

    client = TTSClient(**_client_kwargs(args))
    hello = await client.connect()
    result: dict[str, Any] = {"hello": hello, "responses": []}
    pcm = bytearray()
    try:
        if args.voice or args.speed:
            extras = {"speed": args.speed} if args.speed else None
            await client.update(voice=args.voice, extras=extras)
            log: list[dict[str, Any]] = []
            result["session"] = await _until(client, {"session.created", "error"}, log)
        for text in args.text:
            log = []
            await client.append(text)
            started = time.perf_counter()
            await client.commit(event_id="c1")
            first = None
            async for event in client.events():
                log.append(event)
                if event["type"] == "response.audio.delta":
                    if first is None:
                        first = time.perf_counter() - started
                    pcm.extend(base64.b64decode(event["audio"]))
                if event["type"] in ("response.audio.done", "response.failed", "error"):
                    break
            deltas = [e for e in log if e["type"] == "response.audio.delta"]
            result["responses"].append(
                {
                    "types": [e["type"] for e in log if e["type"] != "response.audio.delta"],
                    "seqs": [e["seq"] for e in deltas],
                    "ids": sorted({e["response_id"] for e in deltas}),
                    "frame_bytes": sorted({len(base64.b64decode(e["audio"])) for e in deltas}),
                    "first_delta_s": first,
                    "last": _summary(log[-1]),
                    "committed": next(
                        (e for e in log if e["type"] == "input_text.committed"), None
                    ),
                }
            )
        await client.status()
        result["status"] = await _until(client, {"server.status"}, [])
        await client.close_session()
        result["closed"] = await _until(client, {"session.closed"}, [])
    finally:
        await client.close()
    if args.out:
        Path(args.out).write_bytes(pcm)  # noqa: ASYNC240 (a test script: one small write)
    result["pcm_bytes"] = len(pcm)
    return result


async def cancel(args: argparse.Namespace) -> dict[str, Any]:
    from tts_server.client import TTSClient

    client = TTSClient(**_client_kwargs(args))
    hello = await client.connect()
    log: list[dict[str, Any]] = []
    try:
        await client.append(args.text[0])
        await client.commit()
        await _until(client, {"response.audio.delta"}, log)
        sent = time.perf_counter()
        await client.cancel()
        ack = await _until(client, {"response.cancelled"}, log)
        latency = time.perf_counter() - sent
        # Anything after the ack, up to a status round trip and a quiet second.
        await asyncio.sleep(1.0)
        await client.status()
        after: list[dict[str, Any]] = []
        await _until(client, {"server.status"}, after)
        # The session keeps working after a cancel.
        await client.append("Still here.")
        await client.commit()
        again: list[dict[str, Any]] = []
        await _until(client, {"response.audio.done", "response.failed", "error"}, again)
    finally:
        await client.close()
    return {
        "hello": hello,
        "before": [_summary(e) for e in log if e["type"] != "response.audio.delta"],
        "deltas_before": sum(e["type"] == "response.audio.delta" for e in log),
        "ack": ack,
        "cancel_latency_s": latency,
        "after": [_summary(e) for e in after],
        "again": [e["type"] for e in again if e["type"] != "response.audio.delta"],
    }


async def status(args: argparse.Namespace) -> dict[str, Any]:
    from tts_server.client import TTSClient

    client = TTSClient(**_client_kwargs(args))
    try:
        hello = await client.connect()
        await client.status()
        snap = await _until(client, {"server.status"}, [])
    finally:
        await client.close()
    return {"hello": hello, "status": snap}


async def busy(args: argparse.Namespace) -> dict[str, Any]:
    """Two connections: the second commit while the first speaks must be refused (busy)."""
    from tts_server.client import TTSClient

    first, second = TTSClient(**_client_kwargs(args)), TTSClient(**_client_kwargs(args))
    await first.connect()
    await second.connect()
    try:
        await first.append(args.text[0])
        await first.commit()
        await _until(first, {"response.audio.delta"}, [])
        await second.append("Hello there.")
        await second.commit(event_id="second")
        log: list[dict[str, Any]] = []
        reply = await _until(second, {"error", "input_text.committed"}, log)
        # Same connection: a second commit while its own response runs.
        await first.append("More words.")
        await first.commit(event_id="own")
        own: list[dict[str, Any]] = []
        own_reply = await _until(first, {"error", "input_text.committed"}, own)
    finally:
        await first.close()
        await second.close()
    return {"other": reply, "own": own_reply}


async def stt(args: argparse.Namespace) -> dict[str, Any]:
    from stt_server.client import TranscriptionClient

    client = TranscriptionClient(**_client_kwargs(args))
    hello = await client.connect()
    pcm = Path(args.pcm).read_bytes()  # noqa: ASYNC240
    log: list[dict[str, Any]] = []
    try:
        await client.update_session(turn_detection=None, language=args.language)
        await _until(client, {"session.updated", "error"}, log)
        step = 3200  # 100 ms at 16 kHz
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            if args.base64:
                await client.send_audio_base64(chunk)
            else:
                await client.send_audio(chunk)
        await client.commit()
        done = await _until(
            client,
            {
                "conversation.item.input_audio_transcription.completed",
                "conversation.item.input_audio_transcription.failed",
                "error",
            },
            log,
        )
        await client.status()
        snap = await _until(client, {"server.status"}, log)
        await client.close_session()
        closed = await _until(client, {"session.closed"}, log)
    finally:
        await client.close()
    return {
        "hello": hello,
        "types": [e["type"] for e in log],
        "done": done,
        "status": snap,
        "closed": closed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["tts", "cancel", "status", "busy", "stt"])
    parser.add_argument("--uri")
    parser.add_argument("--socket")
    parser.add_argument("--token")
    parser.add_argument("--text", action="append", default=[])
    parser.add_argument("--voice")
    parser.add_argument("--speed", type=float)
    parser.add_argument("--out")
    parser.add_argument("--pcm")
    parser.add_argument("--language")
    parser.add_argument("--base64", action="store_true")
    args = parser.parse_args()
    run = {"tts": tts, "cancel": cancel, "status": status, "busy": busy, "stt": stt}[args.mode]
    try:
        result = asyncio.run(asyncio.wait_for(run(args), timeout=300))
    except Exception as exc:
        result = {"exception": type(exc).__name__, "message": str(exc)}
        status_code = getattr(getattr(exc, "response", None), "status_code", None)
        if status_code is not None:
            result["http_status"] = status_code
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
