"""Fake adapters for the runner host tests (importable as ``runner_fakes:FakeAdapter``)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from vox_protocol import ModelInfo, Synthesize, Transcribe, Transcript, Voice
from vox_runner.adapter import Adapter, AdapterError, SynthChunk, iterate_in_thread

RATE = 8000


class FakeAdapter(Adapter):
    """Behaviour is picked by the request: ``prompt``/``text`` keywords trigger the cases."""

    name: ClassVar[str] = "fake"
    kind: ClassVar[Literal["stt", "tts"]] = "tts"

    def __init__(self) -> None:
        self.loaded: Path | None = None
        self.loads = 0
        self.unloads = 0
        self.active = 0
        self.max_active = 0
        self.closed = threading.Event()  # set when a synthesis generator was closed early
        self.waiting = threading.Event()  # set when a synthesis step blocks on ``release``
        self.release = threading.Event()  # lets a blocked synthesis step go on

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        # Both kinds of stdout pollution a real library can cause.
        print("fake adapter: loading (python print)")
        sys.stdout.flush()
        os.write(1, b"fake adapter: loading (native write to fd 1)\n")
        if options.get("fail"):
            raise RuntimeError(f"cannot load {model_dir}")
        if options.get("sleep"):
            time.sleep(float(options["sleep"]))
        self.loaded = model_dir
        self.loads += 1
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=RATE,
            device=device,
            providers=["fake"],
            voices=[Voice(id="a"), Voice(id="b")],
            default_voice="a",
        )

    def unload(self) -> None:
        self.loaded = None
        self.unloads += 1

    async def voices(self) -> list[Voice]:
        return [Voice(id="a"), Voice(id="b")]

    async def transcribe(self, request: Transcribe) -> Transcript:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            match request.prompt:
                case "boom":
                    raise RuntimeError("boom")
                case "bad":
                    raise AdapterError("bad_request", "bad audio")
                case "sleep":
                    await asyncio.sleep(30)
                case "block":  # blocking inference in a worker thread, as real adapters do
                    await asyncio.to_thread(time.sleep, float(request.temperature or 0.5))
                case "overlap":
                    await asyncio.sleep(0.05)
                case "print":
                    print("fake adapter: transcribing (python print)")
                    os.write(1, b"\x00\x00\x00\x05junk!")  # would look like a frame header
            samples = len(request.audio) // 4
            return Transcript(id=request.id, text=f"{samples} samples", duration=samples / 16000)
        finally:
            self.active -= 1

    def synthesize(self, request: Synthesize) -> AsyncIterator[SynthChunk]:
        if not request.text.strip():
            raise AdapterError("bad_request", "text is empty")
        if request.voice not in (None, "a", "b"):
            raise AdapterError("bad_request", f"unknown voice {request.voice!r}")
        return iterate_in_thread(self._generate(request.text))

    def _generate(self, text: str) -> Iterator[SynthChunk]:
        # Like piper and kokoro, the last chunk says so, unless the text asks otherwise (an
        # adapter that cannot know: its stream ends on its next turn).
        marks = "unmarked" not in text
        try:
            sentences = text.split(". ")
            for index, sentence in enumerate(sentences):
                if sentence == "explode":
                    raise RuntimeError("synthesis exploded")
                if sentence == "wait":
                    # Blocks until the test releases it: proves earlier chunks streamed.
                    self.waiting.set()
                    if not self.release.wait(10):
                        raise TimeoutError("never released")
                # "long": seconds of audio, so a listener has plenty to play meanwhile.
                samples = 4 * RATE if sentence.startswith("long") else 100 * (index + 1)
                last = marks and index == len(sentences) - 1
                yield SynthChunk(b"\x01\x00" * samples, RATE, text=sentence, last=last)
        except GeneratorExit:
            self.closed.set()
            raise


class SttOnlyAdapter(Adapter):
    """Implements nothing optional: every inference answers 'unsupported'."""

    name: ClassVar[str] = "stt-only"
    kind: ClassVar[Literal["stt", "tts"]] = "stt"

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        return ModelInfo(adapter=self.name, kind=self.kind, sample_rate=16000)

    def unload(self) -> None:
        pass
