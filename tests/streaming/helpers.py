"""Helpers for the streaming e2e tests: a WS session runner and the three-minute recording."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# The script of the long recording: plain sentences, read one by one by piper and joined.
SCRIPT = [
    "The morning was cold and the streets were still quiet when the baker opened his shop.",
    "He lit the old oven and started to mix the flour with water and a little salt.",
    "By the time the sun came up, the first loaves were already cooling on the shelves.",
    "People walked in one after another, and the small room filled with warm bread.",
    "A young woman asked for two rolls and a cup of coffee before she went to work.",
    "The baker smiled and told her that the coffee was fresh and the rolls were still hot.",
    "Outside, a delivery truck stopped in front of the library across the road.",
    "Two men carried heavy boxes of new books through the wide front doors.",
    "The librarian counted every box and wrote the numbers down in a thick notebook.",
    "Later that day, children from the school next door came in to read together.",
    "They sat on the carpet in a circle while a teacher read a story about the sea.",
    "The story told of a sailor who crossed the ocean in a very small boat.",
    "He had no map, but he watched the stars each night to find his way home.",
    "When a storm came, he tied himself to the mast and waited for the morning light.",
    "The children listened closely and some of them asked if the sailor was real.",
    "The teacher said that many sailors had made long journeys just like that one.",
    "In the afternoon, the rain began to fall and the park emptied very quickly.",
    "Only an old man with a green umbrella stayed on his bench near the pond.",
    "He fed the ducks with pieces of bread that he had bought earlier that morning.",
    "The ducks swam close to the edge of the water and made a lot of noise.",
    "A dog ran across the grass, chasing a red ball that bounced into the mud.",
    "Its owner called it back, laughing, and wiped its paws with an old towel.",
    "When the rain stopped, the sky turned bright and a rainbow appeared over the hills.",
    "Families came back to the park and the children played on the wet swings.",
    "At the market, the farmers were packing up the last of their vegetables.",
    "One of them gave away a basket of apples because he did not want to carry it home.",
    "A student took the basket and shared the apples with her friends on the bus.",
    "The bus drove slowly through the city as the lights came on in every window.",
    "In the evening, the baker cleaned his shop and prepared the dough for tomorrow.",
    "He wrote a list of everything he needed and put it on the kitchen table.",
    "Then he locked the door, walked home, and sat by the fire with a good book.",
    "The book was about a traveler who visited many countries and learned their songs.",
    "He read until his eyes grew tired and the fire was only a soft orange glow.",
    "Outside, the town was quiet again, and the moon shone on the empty streets.",
    "Somewhere a cat walked along a garden wall and disappeared into the dark.",
    "The night was calm, and everyone waited for another ordinary and happy day.",
    "Tomorrow the baker would wake up early again and start the oven once more.",
    "The children would return to the library to hear the end of the sailor's story.",
    "And the old man would come back to the pond with more bread for the ducks.",
    "That is how life went on in the little town, one simple day after another.",
]


@dataclass
class Recording:
    pcm: np.ndarray  # int16 mono
    rate: int
    spans: list[tuple[float, float]] = field(default_factory=list)  # each sentence, seconds

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate

    def wav(self, start: float = 0.0, end: float | None = None) -> bytes:
        a = int(start * self.rate)
        b = len(self.pcm) if end is None else int(end * self.rate)
        out = io.BytesIO()
        sf.write(out, self.pcm[a:b], self.rate, format="WAV", subtype="PCM_16")
        return out.getvalue()


def make_recording(client: httpx.Client, script: list[str] = SCRIPT) -> Recording:
    """Synthesize each sentence through the server and join the PCM (the spans are known)."""
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    rate = 0
    t = 0.0
    for sentence in script:
        response = client.post(
            "/api/synthesize", json={"model": "piper:en-us-joe-medium", "input": sentence}
        )
        response.raise_for_status()
        audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
        pieces.append(audio)
        spans.append((t, t + len(audio) / rate))
        t += len(audio) / rate
    return Recording(np.concatenate(pieces), rate, spans)


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


@dataclass
class Session:
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # event types, "binary" for audio frames
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def drain(ws: ClientConnection, session: Session | None = None) -> Session:
    """Read until the server closes; record every event, frame and the close code."""
    session = session or Session()
    while True:
        try:
            message = ws.recv()
        except ConnectionClosed as exc:
            session.close_code = exc.rcvd.code if exc.rcvd else None
            return session
        if isinstance(message, bytes):
            session.frames.append(message)
            session.order.append("binary")
        else:
            event = json.loads(message)
            session.events.append(event)
            session.order.append(event["type"])


def open_ws(http_url: str, path: str) -> ClientConnection:
    return connect(ws_url(http_url, path), max_size=None, open_timeout=30)
