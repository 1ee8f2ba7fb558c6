"""What `vox serve` loads at start: --preload's words, and the order and rules of the loads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from vox_control.errors import Unavailable
from vox_control.preload import _start_runner, preload_all, take_warm
from vox_control.runner_client import RunnerClient
from vox_control.scheduler.scheduled import LoadSpec
from vox_control.services import Services
from vox_control.settings import DEFAULT_STT, DEFAULT_TTS, Settings
from vox_protocol import Voices

# The defaults in the order they preload: speech first (settings.preload_defaults).
FIRST, SECOND = DEFAULT_TTS, DEFAULT_STT


def test_the_defaults_are_preloaded_unless_told_otherwise(tmp_path: Path) -> None:
    default = Settings(home=tmp_path)
    assert (default.preload_required, default.preload_defaults) == ((), (DEFAULT_TTS, DEFAULT_STT))
    off = Settings.from_env({"VOX_PRELOAD": "none"}, home=tmp_path)
    assert (off.preload_required, off.preload_defaults) == ((), ())
    named = Settings.from_env({"VOX_PRELOAD": "kokoro:a"}, home=tmp_path)
    assert (named.preload_required, named.preload_defaults) == (("kokoro:a",), ())
    both = Settings(home=tmp_path, preload=("defaults", DEFAULT_TTS, "x:y"))
    assert (both.preload_required, both.preload_defaults) == ((DEFAULT_TTS, "x:y"), (DEFAULT_STT,))


class FakeScheduler:
    def __init__(self, room: set[str]) -> None:
        self.room = room
        self.asked: list[tuple[str, bool]] = []

    def loaded(self) -> list[Any]:
        return []

    def loading(self) -> None:
        return None

    def busy(self) -> bool:
        return False

    @contextlib.asynccontextmanager
    async def use(self, name: str, *, evict: bool = True) -> AsyncIterator[Any]:
        self.asked.append((name, evict))
        if name not in self.room:
            raise Unavailable(f"{name} does not fit", code="no_room")

        async def voices() -> Voices:
            return Voices(id=1, voices=[])

        yield SimpleNamespace(runner=SimpleNamespace(voices=voices))


def services(tmp_path: Path, preload: tuple[str, ...], installed: set[str], room: set[str]) -> Any:
    svc = Services(Settings(home=tmp_path, preload=preload, offline=True))
    svc.serving.set()
    svc.scheduler = FakeScheduler(room)  # type: ignore[assignment]
    svc.store = SimpleNamespace(is_installed=installed.__contains__)  # type: ignore[assignment]
    return svc


async def test_named_models_load_first_then_the_installed_defaults_that_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    installed = {FIRST, SECOND}
    svc = services(tmp_path, ("defaults", "x:y"), installed, room={"x:y", FIRST})
    with caplog.at_level("INFO", logger="vox.services"):
        await preload_all(svc)
    # One at a time, in order; the defaults may evict nothing, and one that does not fit is
    # a line in the log, not a readiness failure.
    assert svc.scheduler.asked == [("x:y", True), (FIRST, False), (SECOND, False)]
    assert svc.answered == {"x:y"}
    assert svc.preload_errors == {}
    assert f"not preloading {SECOND}: {SECOND} does not fit" in caplog.text


async def test_defaults_not_installed_and_preload_none_load_nothing(tmp_path: Path) -> None:
    svc = services(tmp_path, ("defaults",), {SECOND}, room={FIRST, SECOND})
    await preload_all(svc)
    assert svc.scheduler.asked == [(SECOND, False)]
    svc = services(tmp_path, ("none",), {FIRST, SECOND}, {FIRST, SECOND})
    await svc.start()
    assert not svc._background  # no preload task at all
    assert svc.scheduler.asked == []


class WarmRunner(RunnerClient):
    def __init__(self, name: str) -> None:  # no process: only what preload.py touches
        self.name, self.closed, self.loaded = name, False, ""

    @property
    def alive(self) -> bool:
        return not self.closed

    async def load(self, model_dir: str, **_: Any) -> Any:
        self.loaded = model_dir

    async def close(self, grace: float = 5.0) -> None:
        self.closed = True


@pytest.mark.parametrize("fits", [True, False])
async def test_later_preloads_start_their_runners_ahead(tmp_path: Path, fits: bool) -> None:
    room = {"x:y", FIRST}
    svc = services(tmp_path, ("defaults", "x:y"), {"x:y", FIRST, SECOND}, room)
    svc.scheduler.fits_now = lambda specs: fits and len(specs) == 3
    started: list[WarmRunner] = []

    async def load_spec(name: str) -> LoadSpec:
        return LoadSpec(name, "fake", "stt", Path(f"/m/{name}"), Path("/py"), "cpu")

    async def start_runner(spec: LoadSpec) -> WarmRunner:
        started.append(WarmRunner(spec.name))
        return started[-1]

    svc.load_spec, svc.start_runner = load_spec, start_runner
    taken: list[RunnerClient | None] = []
    use = svc.scheduler.use

    @contextlib.asynccontextmanager
    async def use_and_spawn(name: str, *, evict: bool = True) -> AsyncIterator[Any]:
        await asyncio.sleep(0.05)  # a load takes a while: the runners ahead start meanwhile
        if name in room:  # the scheduler spawns (and takes a runner) only to load
            taken.append(await take_warm(svc, name))
        async with use(name, evict=evict) as model:
            yield model

    svc.scheduler.use = use_and_spawn
    await preload_all(svc)
    if fits:
        # All three fit now: every runner started ahead and loaded its model; the scheduler
        # took each that fits once it had loaded. The one that did not fit left its runner
        # unused: closed at the end, not left running.
        assert [r.name for r in started] == ["x:y", FIRST, SECOND]
        assert [r.loaded for r in started] == [f"/m/{n}" for n in ("x:y", FIRST, SECOND)]
        assert [r.name if r else None for r in taken] == ["x:y", FIRST]
        assert [r.closed for r in started] == [False, False, True]
    else:
        # The first preload's runner is the scheduler's own; the others' only started.
        assert [r.name for r in started] == [FIRST, SECOND]
        assert [r.loaded for r in started] == ["", ""]
        assert [r.name if r else None for r in taken] == [None, FIRST]
        assert [r.closed for r in started] == [False, True]
    assert svc.warm == {}


async def test_a_head_start_adds_to_the_load_time_only_what_ran_before_the_ask(
    tmp_path: Path,
) -> None:
    """The loader times a load from its own ask, waiting for the runner started ahead
    included: the runner adds only the part of its head start before that ask."""
    svc = services(tmp_path, ("none",), set(), set())

    class Slow(WarmRunner):
        async def load(self, model_dir: str, **_: Any) -> Any:
            await asyncio.sleep(0.2)
            self.loaded = model_dir

    async def start_runner(spec: LoadSpec) -> WarmRunner:
        return Slow(spec.name)

    svc.start_runner = start_runner
    spec = LoadSpec("a:b", "fake", "tts", Path("/m/a"), Path("/py"), "cpu")
    # Loaded well before anyone asked: all of the load counts, none of the wait after it.
    svc.warm["a:b"] = asyncio.create_task(_start_runner(svc, spec, load=True, at_once=True))
    await asyncio.sleep(0.5)
    runner = await take_warm(svc, "a:b")
    assert runner is not None
    assert 0.15 < runner.ahead_seconds < 0.4
    # Asked as it started: the loader's own time covers it all.
    svc.warm["a:b"] = asyncio.create_task(_start_runner(svc, spec, load=True, at_once=True))
    runner = await take_warm(svc, "a:b")
    assert runner is not None
    assert runner.loaded == "/m/a"
    assert runner.ahead_seconds < 0.05


async def test_a_request_waits_for_no_other_preloads_load(tmp_path: Path) -> None:
    """The second default's runner loaded first: a request for it is served while the first
    default's runner is still loading (the scheduler's queue holds no preload meanwhile)."""
    room = {FIRST, SECOND}
    svc = services(tmp_path, ("defaults",), room, room)
    svc.scheduler.fits_now = lambda specs: True
    slow = asyncio.Event()

    async def load_spec(name: str) -> LoadSpec:
        return LoadSpec(name, "fake", "stt", Path(f"/m/{name}"), Path("/py"), "cpu")

    class Loading(WarmRunner):
        async def load(self, model_dir: str, **_: Any) -> Any:
            if self.name == FIRST:
                await slow.wait()  # the first default's load takes long
            self.loaded = model_dir

    async def start_runner(spec: LoadSpec) -> WarmRunner:
        return Loading(spec.name)

    svc.load_spec, svc.start_runner = load_spec, start_runner
    preloading = asyncio.create_task(preload_all(svc))
    for _ in range(20):
        await asyncio.sleep(0)
    # The slow load has not ended, and no preload has asked the scheduler for anything yet:
    # a request for the other default would be first in its queue and find its runner loaded.
    assert svc.scheduler.asked == []
    runner = await take_warm(svc, SECOND)
    assert runner is not None
    assert runner.loaded == f"/m/{SECOND}"
    slow.set()
    await preloading
    assert [name for name, _ in svc.scheduler.asked] == [FIRST, SECOND]


async def test_a_later_preload_waits_for_an_idle_server_or_a_request_for_it(
    tmp_path: Path,
) -> None:
    """On a small machine the next model's load would slow the request being answered."""
    room = {FIRST, SECOND}
    svc = services(tmp_path, ("defaults",), room, room)
    svc.scheduler.fits_now = lambda specs: True
    busy = [SimpleNamespace(name="x:y", refcount=1)]  # another model serving a request
    svc.scheduler.busy = lambda: any(model.refcount for model in busy)
    started: list[str] = []

    async def load_spec(name: str) -> LoadSpec:
        return LoadSpec(name, "fake", "stt", Path(f"/m/{name}"), Path("/py"), "cpu")

    async def start_runner(spec: LoadSpec) -> WarmRunner:
        started.append(spec.name)
        return WarmRunner(spec.name)

    svc.load_spec, svc.start_runner = load_spec, start_runner

    preloading = asyncio.create_task(preload_all(svc))
    await asyncio.sleep(0.2)
    assert started == [FIRST]  # the first at once; the second waits while busy
    busy.clear()
    await asyncio.sleep(0.2)
    assert started == [FIRST, SECOND]
    await preloading

    started.clear()
    busy.append(SimpleNamespace(name="x:y", refcount=2))  # busy throughout: asked only
    preloading = asyncio.create_task(preload_all(svc))
    await asyncio.sleep(0.2)
    assert started == [FIRST]
    runner = await asyncio.wait_for(take_warm(svc, SECOND), 1.0)
    assert runner is not None
    assert runner.name == SECOND
    assert started == [FIRST, SECOND]
    await preloading
    assert svc.warm == {}
    assert svc.warm_asked == {}


def test_ps_lists_the_preloads_loading_ahead(tmp_path: Path) -> None:
    """Their runners are not the scheduler's yet: /api/ps names them apart until taken."""
    from litestar.testing import TestClient
    from vox_control.app import create_app

    settings = Settings(home=tmp_path, preload=("none",), pull_defaults=False)
    svc = Services(settings)
    with TestClient(create_app(settings, svc)) as client:
        assert client.get("/api/ps").json()["preloading"] == []
        svc.warm[SECOND] = svc.warm[FIRST] = None  # type: ignore[assignment]
        assert client.get("/api/ps").json()["preloading"] == sorted([FIRST, SECOND])
        svc.warm.clear()
