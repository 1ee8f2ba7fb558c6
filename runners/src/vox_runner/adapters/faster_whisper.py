"""faster-whisper STT adapter (faster-whisper 1.2, CTranslate2): one converted Whisper model dir.

Load options: ``compute_type`` (default int8 on CPU, float16 on CUDA; ``compute_type_cpu`` /
``compute_type_cuda`` set one device's only), ``cpu_threads``
(0 = the library default), ``num_workers`` (raise it together with ``--parallel``) and
``beam_size`` (default 5; a request's own ``beam_size`` wins).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from vox_protocol import ModelInfo, Segment, Transcribe, Transcript, Word

from vox_runner.adapter import Adapter, AdapterError, option_int, option_str, parse_device
from vox_runner.adapters.faster_whisper_batch import BATCH_WINDOW_S, batch_decode
from vox_runner.adapters.faster_whisper_load import whisper_model
from vox_runner.memory import defer_import

log = logging.getLogger("vox_runner.adapters.faster_whisper")


# Per device: int8 keeps CPU inference fast and small; float16 is the GPU's native width.
COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CPU-only build or no driver: no GPU to use
        return 0


def cuda_libraries(roots: list[Path]) -> list[Path]:
    """cuBLAS 12 and cuDNN 9 from the sandbox's nvidia-* wheels, in dependency order."""
    found: list[Path] = []
    for pattern in ("cublas/lib/libcublasLt.so.12", "cublas/lib/libcublas.so.12"):
        found += [hit for root in roots for hit in sorted(root.glob(pattern))]
    # libcudnn.so.9 dlopens its sub-libraries (graph, ops, cnn, adv, engines) on demand.
    cudnn = [hit for root in roots for hit in sorted(root.glob("cudnn/lib/libcudnn*.so.9"))]
    found += sorted(cudnn, key=lambda p: (p.name != "libcudnn_graph.so.9", p.name))
    return found


def preload_cuda_libraries() -> int:
    """Load CTranslate2's CUDA 12 libraries by path, before it looks for them by name.

    The sandbox installs them as wheels (nvidia-cublas-cu12, nvidia-cudnn-cu12), which no
    loader path names; a library already loaded with a matching soname satisfies dlopen, and
    LD_LIBRARY_PATH cannot be changed for a process that has already started.
    """
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return 0
    pending = cuda_libraries([Path(p) for p in spec.submodule_search_locations])
    loaded = 0
    while pending:  # a few passes: a library whose dependency is not loaded yet fails once
        failed = []
        for path in pending:
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                loaded += 1
            except OSError:
                failed.append(path)
        if len(failed) == len(pending):
            log.warning("could not preload %s", ", ".join(p.name for p in failed))
            break
        pending = failed
    return loaded


class _Stopped(Exception):
    """Raised in the decoding thread by a model call made after its request was cancelled."""


class _Interruptible:
    """CTranslate2's Whisper, whose inference calls first check the calling thread's stop flag.

    faster-whisper's segment generator yields only after a whole 30 s window, and one window
    may take several model calls (encode, a decode per fallback temperature, word alignment):
    checking before each call stops a cancelled request within one call, not one window.
    """

    _CALLS = frozenset({"encode", "generate", "align", "detect_language"})

    def __init__(self, model: Any, local: threading.local) -> None:
        self._model = model
        self._local = local

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._model, name)
        if name not in self._CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            stop: threading.Event | None = getattr(self._local, "stop", None)
            if stop is not None and stop.is_set():
                raise _Stopped
            return attr(*args, **kwargs)

        return call


class FasterWhisperAdapter(Adapter):
    name: ClassVar[str] = "faster-whisper"
    kind: ClassVar[Literal["stt", "tts"]] = "stt"

    def __init__(self) -> None:
        self._model: Any = None  # faster_whisper.WhisperModel
        self._beam_size = 5
        self._sample_rate = 16000
        self._languages: list[str] = []
        self._multilingual = True
        self._local = threading.local()  # the stop flag of the request a thread decodes

    def load(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> ModelInfo:
        defer_import("av")  # faster-whisper decodes files with PyAV; a runner gets PCM
        kind, index = parse_device(device)
        if kind == "auto":
            kind = "cuda" if _cuda_devices() > 0 else "cpu"
        cpu_threads = option_int(options, "cpu_threads", 0)
        num_workers = option_int(options, "num_workers", 1)
        beam_size = option_int(options, "beam_size", 5)
        # Check first: given a path that is not a directory, faster-whisper would take it
        # for a model name and try to download it from the Hugging Face Hub.
        if not (model_dir / "model.bin").is_file():
            raise AdapterError("load_failed", f"no CTranslate2 model.bin in {model_dir}")

        def build(kind: str) -> Any:
            default_type = COMPUTE_TYPES[kind]
            compute_type = option_str(options, f"compute_type_{kind}") or option_str(
                options, "compute_type", default_type
            )
            return whisper_model(
                model_dir,
                device=kind,
                device_index=index,
                compute_type=compute_type or default_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
            )

        if kind == "cuda":
            log.info("preloaded %d CUDA libraries", preload_cuda_libraries())
        try:
            model = build(kind)
        except (RuntimeError, ValueError) as exc:
            if kind != "cuda":
                raise
            # No usable GPU, or CTranslate2's CUDA 12 libraries (cuBLAS, cuDNN) are missing.
            log.warning("device %s failed (%s); falling back to CPU", device, exc)
            model = build("cpu")
        # Report what CTranslate2 really chose (e.g. int8 becomes int8_float32 on CPU).
        real_device = str(model.model.device)
        real_type = str(model.model.compute_type)
        if real_device != "cpu":
            real_device = f"{real_device}:{model.model.device_index[0]}"
        self._languages = list(model.supported_languages)
        self._multilingual = bool(model.model.is_multilingual)
        self._sample_rate = int(model.feature_extractor.sampling_rate)
        self._beam_size = beam_size
        model.model = _Interruptible(model.model, self._local)
        self._model = model
        return ModelInfo(
            adapter=self.name,
            kind=self.kind,
            sample_rate=self._sample_rate,
            device=real_device,
            providers=[f"ctranslate2:{model.model.device}:{real_type}"],
            languages=list(self._languages),
        )

    def unload(self) -> None:
        self._model = None

    async def transcribe(self, request: Transcribe) -> Transcript:
        model = self._model
        if model is None:
            raise AdapterError("not_loaded", "no whisper model is loaded")
        if request.sample_rate != self._sample_rate:
            raise AdapterError(
                "bad_request",
                f"audio must be {self._sample_rate} Hz mono float32, got {request.sample_rate} Hz",
            )
        if len(request.audio) % 4:
            raise AdapterError("bad_request", "audio length is not a whole number of float32s")
        if request.language and request.language not in self._languages:
            raise AdapterError(
                "bad_request", f"language {request.language!r} is not supported by this model"
            )
        task = request.task
        if task == "translate" and not self._multilingual:
            # An English-only model already writes English: "translate to English" is its
            # transcription. OpenAI clients send whisper-1 (the default, often an .en model)
            # to /v1/audio/translations and expect English text, not an error.
            log.info("English-only model: translating to English is transcribing")
            task = "transcribe"
        # A read-only view of the frame's bytes: no copy of the audio.
        audio = np.frombuffer(request.audio, dtype="<f4")
        options: dict[str, Any] = {
            "language": request.language,
            "task": task,
            "initial_prompt": request.prompt,
            "word_timestamps": request.word_timestamps,
            "vad_filter": request.vad_filter,
            "beam_size": request.beam_size or self._beam_size,
        }
        if request.temperature is not None:
            options["temperature"] = request.temperature
        stop = threading.Event()
        try:
            return await asyncio.to_thread(self._run, model, audio, options, request.id, stop)
        except asyncio.CancelledError:
            stop.set()  # the worker stops decoding at the next segment
            raise

    def batch_key(self, request: Transcribe) -> tuple[str, str, int] | None:
        """Clips of one 30 s window, plain options and a known language batch together
        (vox_runner.batching); anything else keeps the full path (temperature fallback,
        prompts, word timestamps, VAD, language detection, long audio)."""
        if self._model is None or request.sample_rate != self._sample_rate:
            return None
        samples = len(request.audio) // 4
        if not 0 < samples <= BATCH_WINDOW_S * self._sample_rate or len(request.audio) % 4:
            return None
        if request.prompt or request.word_timestamps or request.vad_filter:
            return None
        if request.temperature not in (None, 0.0):
            return None
        language = request.language or (None if self._multilingual else "en")
        if language is None or language not in self._languages:
            return None
        task = request.task if self._multilingual else "transcribe"
        return (language, task, request.beam_size or self._beam_size)

    async def transcribe_batch(self, requests: Sequence[Transcribe]) -> list[Transcript]:
        model = self._model
        if model is None:
            raise AdapterError("not_loaded", "no whisper model is loaded")
        key = self.batch_key(requests[0])
        if key is None:  # the host batches only what batch_key accepts
            return [await self.transcribe(request) for request in requests]
        language, task, beam_size = key
        return await asyncio.to_thread(
            batch_decode, model, list(requests), language, task, beam_size
        )

    def _run(
        self,
        model: Any,
        audio: npt.NDArray[np.float32],
        options: dict[str, Any],
        request_id: int,
        stop: threading.Event,
    ) -> Transcript:
        """Blocking: decode every segment (the generator does the work) in this thread."""
        if audio.size == 0:
            return Transcript(id=request_id, text="", language=options["language"], duration=0.0)
        self._local.stop = stop
        try:
            return self._decode(model, audio, options, request_id, stop)
        except _Stopped:
            # Cancelled: nobody reads this reply (the host already answered "cancelled").
            return Transcript(id=request_id, text="", language=options["language"])
        finally:
            self._local.stop = None

    def _decode(
        self,
        model: Any,
        audio: npt.NDArray[np.float32],
        options: dict[str, Any],
        request_id: int,
        stop: threading.Event,
    ) -> Transcript:
        pieces, info = model.transcribe(audio, **options)
        segments: list[Segment] = []
        for piece in pieces:
            if stop.is_set():
                break
            words = [
                Word(
                    start=float(w.start),
                    end=float(w.end),
                    word=w.word,
                    probability=float(w.probability),
                )
                for w in piece.words or ()
            ]
            segments.append(
                Segment(
                    start=float(piece.start),
                    end=float(piece.end),
                    text=piece.text,
                    words=words,
                    avg_logprob=float(piece.avg_logprob),
                    no_speech_prob=float(piece.no_speech_prob),
                )
            )
        return Transcript(
            id=request_id,
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            segments=segments,
        )
