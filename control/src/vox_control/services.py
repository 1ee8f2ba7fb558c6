"""The services a route needs, built once per app: registry, store, sandboxes, puller, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec
from vox_protocol import Loaded
from vox_sandboxes import RunnerSource, Sandbox, SandboxError, SandboxManager

from vox_control.errors import BadRequest, ModelNotFound, Unavailable
from vox_control.heap import IdleTrim
from vox_control.metrics import Metrics
from vox_control.preload import preload_all, take_warm
from vox_control.runner_client import RunnerClient, RunnerDied, RunnerRequestError
from vox_control.scheduler.loop import LoadSpec, Scheduler
from vox_control.settings import Settings
from vox_control.store.disk import Manifest, NotInstalled, Store
from vox_control.store.families import blend_voices, check_device
from vox_control.store.integrity import ModelDamaged, verify
from vox_control.store.registry import (
    CatalogEntry,
    InvalidModelName,
    Registry,
    UnknownModel,
    validate_name,
)
from vox_control.store.sources.base import PullEvent
from vox_control.store.sources.index import load_remote
from vox_control.store.sources.local import install_upload

log = logging.getLogger("vox.services")

# Names OpenAI clients send; they map onto the configured default models.
OPENAI_STT_ALIASES = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"})
OPENAI_TTS_ALIASES = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)


@dataclass
class _PullJob:
    task: asyncio.Task[Manifest]
    listeners: list[asyncio.Queue[PullEvent | None]] = field(default_factory=list)


class Puller:
    """Runs pulls: one job per model however many clients ask; events fan out to each of them."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: Store,
        sandboxes: SandboxManager,
        metrics: Metrics | None = None,
    ):
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._registry = registry
        self._store = store
        self._sandboxes = sandboxes
        self._jobs: dict[str, _PullJob] = {}

    def in_progress(self) -> list[str]:
        return sorted(self._jobs)

    async def wait(self, name: str) -> None:
        """If ``name`` is being pulled, wait for that pull to finish (errors ignored here)."""
        job = self._jobs.get(name)
        if job is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(job.task)

    async def events(self, name: str, *, verify: bool = False) -> AsyncIterator[PullEvent]:
        """Start (or join) the pull of ``name`` and yield its progress; raises on failure.

        ``verify`` hashes every installed file (else only files whose mtime moved); what does
        not match is fetched again. When every listener has gone (clients disconnected), the
        pull is cancelled and its staging area removed.
        """
        entry = self._registry.resolve(name)  # aliases pull their model
        self.check(entry.name)
        job = self._jobs.get(entry.name)
        if job is None:
            run = self._run(entry, verify)
            job = _PullJob(asyncio.create_task(run, name=f"pull-{entry.name}"))
            self._jobs[entry.name] = job
            job.task.add_done_callback(functools.partial(self._finish, entry.name))
        queue: asyncio.Queue[PullEvent | None] = asyncio.Queue()
        job.listeners.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
            await job.task  # re-raises the pull's error for this listener
        finally:
            job.listeners.remove(queue)
            if not job.listeners and not job.task.done():
                job.task.cancel()

    def check(self, name: str) -> None:
        """Fail fast, before any download, where this server cannot run the model at all."""
        check_device(self._registry.resolve(name), self._settings.resolved_device)

    async def pull(self, name: str, *, verify: bool = False) -> Manifest:
        async for _ in self.events(name, verify=verify):
            pass
        return self._store.manifest(self._registry.resolve(name).name)

    async def upload(self, entry: CatalogEntry, stream: IO[bytes]) -> Manifest:
        """Install files a client uploads (a tar stream) as ``entry``, sandbox first."""
        await self.prepare_sandbox(entry.adapter, entry.adapter_package)
        return await install_upload(entry, self._store, stream)

    async def prepare_sandbox(self, adapter: str, package: str | None = None) -> Sandbox:
        """The adapter's sandbox (from ``package``, an entry's ``adapter_package``), built if
        needed; uv's output goes to the server log only."""

        built: list[str] = []

        def sandbox_log(line: str) -> None:
            built.append(adapter)  # uv speaks only when it builds; a ready sandbox is silent
            log.debug("sandbox %s: %s", adapter, line)

        try:
            ensure = self._sandboxes.ensure
            sandbox = await asyncio.to_thread(ensure, adapter, sandbox_log, package)
            self._metrics.sandbox_builds.labels(adapter, "built" if built else "ready").inc()
            return sandbox
        except SandboxError as exc:
            self._metrics.sandbox_builds.labels(adapter, "failed").inc()
            # The summary says what failed (a full disk, say); uv's lines are the detail.
            raise Unavailable(exc.summary, code="sandbox_unavailable", detail=str(exc)) from exc

    def _finish(self, name: str, _task: object = None) -> None:
        job = self._jobs.pop(name, None)
        if job is not None:
            for queue in job.listeners:
                queue.put_nowait(None)

    def _emit(self, name: str, event: PullEvent) -> None:
        job = self._jobs.get(name)
        if job is not None:
            for queue in job.listeners:
                queue.put_nowait(event)

    async def _run(self, entry: CatalogEntry, verify: bool) -> Manifest:
        started, fetched = time.perf_counter(), dict[str, int]()
        try:
            manifest = await self._fetch(entry, verify, fetched)
        except BaseException as exc:
            result = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failure"
            self._metrics.pull_done(entry.name, result, sum(fetched.values()), started)
            raise
        self._metrics.pull_done(entry.name, "success", sum(fetched.values()), started)
        return manifest

    async def _fetch(self, entry: CatalogEntry, verify: bool, fetched: dict[str, int]) -> Manifest:
        def emit(event: PullEvent) -> None:
            if event.file is not None and event.completed is not None:
                fetched[event.file] = event.completed  # each file's bytes, as far as they got
            self._emit(entry.name, event)

        # The sandbox comes first: files are committed (and the model listed) only once the
        # model can run, so a failed sandbox leaves nothing installed and the pull can retry.
        emit(PullEvent(status=f"preparing the {entry.adapter} sandbox"))
        await self.prepare_sandbox(entry.adapter, entry.adapter_package)
        # The download stack (httpx, huggingface_hub: 0.1-0.3 s, ~11 MB) loads on the first
        # pull, not at every start of a server that may never pull.
        from vox_control.store.sources import pull_model

        return await pull_model(
            entry,
            self._store,
            index_url=self._settings.pypi_index,
            hf_endpoint=self._settings.hf_endpoint,
            offline=self._settings.offline,
            progress=emit,
            verify=verify,
            local_roots=self._settings.local_dir_roots,
        )


class Services:
    """Everything the routes use; one instance per app, provided by dependency injection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        remote = load_remote(
            settings.registry_url, settings.home / "registry-cache.json", offline=settings.offline
        )
        self.registry = Registry(user_dir=settings.catalog_dir, remote=remote)
        self.store = Store(settings.models_dir)
        self.sandboxes = SandboxManager(
            settings.sandboxes_dir,
            RunnerSource.detect(settings.sandboxes_dir / ".wheels"),
            device=settings.resolved_device,
            interpreters=settings.adapter_interpreters,
        )
        self.metrics = Metrics()
        self.puller = Puller(settings, self.registry, self.store, self.sandboxes, self.metrics)
        # What requests freed on the heap goes back to the OS once the server is idle (heap.py).
        self.heap = IdleTrim(lambda: self.scheduler.busy())
        self.scheduler = Scheduler(
            settings, self.load_spec, self.spawn, metrics=self.metrics, on_idle=self.heap.idle
        )
        self.metrics.watch(self.scheduler)
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        # Models whose last load crashed: their next load hashes every file.
        self._suspect: set[str] = set()
        # Protocol servers beside HTTP (Wyoming) report their sessions here for /api/ps.
        self.session_status: dict[str, Callable[[], dict[str, Any]]] = {}
        # --preload models whose runner answered a round trip (readiness), or why not.
        self.answered: set[str] = set()
        self.preload_errors: dict[str, str] = {}
        # Runners started ahead for the preloads, by model (preload.py); spawn takes them.
        self.warm: dict[str, asyncio.Task[RunnerClient]] = {}
        # Set when a request asks for a model whose runner waits to start ahead (preload.py).
        self.warm_asked: dict[str, asyncio.Event] = {}
        # Set by the app's lifespan, just before it serves: the app is built by then.
        self.serving = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin the background work: pulls of missing defaults, preloads. Once: `vox serve`
        starts it before the app exists, the app's lifespan (tests' apps) otherwise."""
        if self._started:
            return
        self._started = True
        if self.settings.pull_defaults and not self.settings.offline and not self.store.list():
            for name in (self.settings.default_stt, self.settings.default_tts):
                self._spawn_background(self._pull_quietly(name))
        if self.settings.preload_required or self.settings.preload_defaults:
            self._spawn_background(preload_all(self))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.scheduler.stop()
        await self.heap.close()

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _pull_quietly(self, name: str) -> None:
        log.info("store is empty: pulling default model %s", name)
        try:
            await self.puller.pull(name)
            log.info("pulled %s", name)
        except Exception as exc:
            log.error("could not pull default model %s: %s", name, exc)

    # ------------------------------------------------------------------ names

    def model_name(self, requested: str | None, kind: str) -> str:
        """Map a requested name (or none, or an OpenAI alias) onto an installed-model name."""
        if not requested or requested in (OPENAI_STT_ALIASES | OPENAI_TTS_ALIASES):
            if requested in OPENAI_STT_ALIASES or (not requested and kind == "stt"):
                return self.settings.default_stt
            return self.settings.default_tts
        try:
            name = validate_name(requested)
        except InvalidModelName as exc:
            raise BadRequest(str(exc), param="model") from exc
        if name not in self.registry and not self.store.is_installed(name):
            # A catalog alias (piper:joe) names its entry everywhere, not only in pulls.
            with contextlib.suppress(UnknownModel):
                return self.registry.resolve(name).name
        return name

    def manifest(self, name: str, kind: str | None = None) -> Manifest:
        try:
            manifest = self.store.manifest(name)
        except NotInstalled:
            try:
                self.registry.get(name)
            except UnknownModel as exc:
                raise ModelNotFound(str(exc)) from exc
            raise ModelNotFound(
                f"model '{name}' is not pulled; run `vox pull {name}` or POST /api/pull"
            ) from None
        if kind is not None and manifest.type != kind:
            what = {"stt": "speech-to-text", "tts": "text-to-speech"}
            raise BadRequest(
                f"model '{name}' is a {what.get(manifest.type, manifest.type)} model, "
                f"not {what[kind]}",
                param="model",
            )
        return manifest

    def voice_for(
        self, manifest: Manifest, voice: str | None, loaded: Sequence[str] = ()
    ) -> str | None:
        """Map OpenAI voice names through the entry's voice map; unknown ones fall to default.

        Other names must be one of the catalog's voices, else of ``loaded`` (what the model's
        runner reported), so a wrong voice is a 400 on ``voice`` whoever knows the list.
        """
        if not voice:
            return None
        entry = manifest.entry
        if voice in entry.voice_map:
            return entry.voice_map[voice]
        if voice in OPENAI_VOICES:
            return entry.default_voice
        known = entry.voices or loaded
        parts = blend_voices(voice)  # kokoro's "a+b" / "a*0.7+b*0.3": each part must exist
        unknown = [v for v in parts or [voice] if known and v not in known]
        if unknown:
            # Catalog voices are checked before a runner is started for nothing.
            raise BadRequest(
                f"unknown voice '{unknown[0]}' for {manifest.name}; "
                + (
                    f"available: {', '.join(known)}"
                    if len(known) <= 12
                    else f"GET /api/voices?model={manifest.name} lists them"
                ),
                param="voice",
            )
        return voice

    # ------------------------------------------------------------------ scheduler seams

    async def load_spec(self, name: str) -> LoadSpec:
        await self.puller.wait(name)
        manifest = self.manifest(name)
        check_device(manifest.entry, self.settings.resolved_device)
        await self._verify(name, full=name in self._suspect)
        package = manifest.entry.adapter_package
        sandbox = self.sandboxes.get(manifest.adapter, package)
        if sandbox is None:
            sandbox = await self.puller.prepare_sandbox(manifest.adapter, package)
        return LoadSpec(
            name=name,
            adapter=manifest.adapter,
            kind=manifest.type,
            model_dir=self.store.path(name),
            python=sandbox.python,
            device=self.settings.resolved_device,
            options=dict(manifest.entry.options),
            memory_mb=float(manifest.entry.memory_mb),
        )

    async def _verify(self, name: str, *, full: bool) -> None:
        """The model's files against its manifest: mtimes and sizes, or every hash (``full``)."""
        try:
            await asyncio.to_thread(verify, self.store, name, full=full)
        except ModelDamaged as exc:
            raise Unavailable(str(exc), code="model_damaged") from exc
        except NotInstalled as exc:
            raise ModelNotFound(str(exc)) from exc
        self._suspect.discard(name)

    async def spawn(self, spec: LoadSpec) -> RunnerClient:
        runner = await take_warm(self, spec.name) or await self.start_runner(spec)
        if isinstance(runner, _LoadWatchedRunner):  # start() builds its own class
            runner.on_load_failed = functools.partial(self._suspect.add, spec.name)
        return runner

    async def start_runner(self, spec: LoadSpec) -> RunnerClient:
        """A runner process for ``spec``'s adapter, handshake done, nothing loaded yet."""
        try:
            return await _LoadWatchedRunner.start(
                spec.name,
                spec.python,
                spec.adapter,
                max_frame=self.settings.max_frame_bytes,
                timeout=self.settings.runner_start_timeout,
                extra_args=(
                    *("--parallel", str(max(self.settings.num_parallel, 1))),
                    *("--cache-dir", str(self.settings.home / "cache")),
                ),
            )
        except (RunnerDied, TimeoutError):
            # The sandbox passed its probe once and is trusted on a stat since; one broken in
            # place (a package removed by hand) is probed afresh, and rebuilt, next time.
            self.sandboxes.distrust(spec.python)
            raise


class _LoadWatchedRunner(RunnerClient):
    """A runner client that reports a failed Load: a runner that crashes or errors while
    reading the model may have met a damaged file whose mtime did not move, so the next
    load of that model hashes every file first."""

    on_load_failed: Callable[[], None] = staticmethod(lambda: None)

    async def load(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        options: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> Loaded:
        try:
            return await super().load(model_dir, device=device, options=options)
        except (RunnerDied, RunnerRequestError):
            self.on_load_failed()
            raise


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
