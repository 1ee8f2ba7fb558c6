"""Fish Speech 1.5 through the fish-speech package's TTSInferenceEngine; CUDA only.

Unverified on real weights: no GPU and no Fish Speech weights reach this project's machines.
The model directory is the ``fishaudio/fish-speech-1.5`` snapshot: the text2semantic LLaMA
checkpoint plus the firefly GAN VQ decoder (``firefly-gan-vq-*-generator.pth``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from vox_runner.adapter import AdapterError, option_int, option_str
from vox_runner.adapters.gpu import GpuTtsAdapter, to_pcm16


class FishSpeechAdapter(GpuTtsAdapter):
    name: ClassVar[str] = "fish-speech"
    family: ClassVar[str] = "Fish Speech"
    sample_rate: ClassVar[int] = 44100

    def load_model(self, model_dir: Path, device: str, options: Mapping[str, Any]) -> Any:
        import torch
        from fish_speech.inference_engine import TTSInferenceEngine
        from fish_speech.models.text2semantic.inference import launch_thread_safe_queue
        from fish_speech.models.vqgan.inference import load_model as load_decoder

        decoders = sorted(model_dir.glob("*generator*.pth"))
        if len(decoders) != 1:
            raise AdapterError("load_failed", f"expected one *generator*.pth in {model_dir}")
        precision = torch.bfloat16
        llama_queue = launch_thread_safe_queue(
            checkpoint_path=str(model_dir), device=device, precision=precision, compile=False
        )
        decoder = load_decoder(
            config_name=option_str(options, "decoder_config", "firefly_gan_vq"),
            checkpoint_path=str(decoders[0]),
            device=device,
        )
        self._max_new_tokens = option_int(options, "max_new_tokens", 1024)
        return TTSInferenceEngine(
            llama_queue=llama_queue, decoder_model=decoder, precision=precision, compile=False
        )

    def speak(self, sentence: str, voice: str | None) -> Iterator[bytes]:
        from fish_speech.utils.schema import ServeTTSRequest

        request = ServeTTSRequest(
            text=sentence, references=[], max_new_tokens=self._max_new_tokens, streaming=False
        )
        for result in self._model.inference(request):
            if result.code == "error":
                raise AdapterError("inference_failed", f"fish-speech: {result.error}")
            if result.code in ("segment", "final") and result.audio is not None:
                _rate, audio = result.audio
                yield to_pcm16(audio)
