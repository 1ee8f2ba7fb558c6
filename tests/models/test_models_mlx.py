"""mlx-audio adapters: real runs only on Apple Silicon; elsewhere loading says why it cannot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

RUNNERS_SRC = Path(__file__).resolve().parents[2] / "runners" / "src"
if str(RUNNERS_SRC) not in sys.path:
    sys.path.insert(0, str(RUNNERS_SRC))

from vox_runner.adapter import AdapterError  # noqa: E402
from vox_runner.adapters.mlx_audio import (  # noqa: E402
    MlxKokoroAdapter,
    MlxWhisperAdapter,
    apple_silicon,
)

MLX_KOKORO = os.environ.get("VOX_TEST_MLX_KOKORO", "")


@pytest.mark.skipif(apple_silicon(), reason="this host is Apple Silicon: mlx can load here")
@pytest.mark.parametrize("adapter", [MlxKokoroAdapter, MlxWhisperAdapter])
def test_mlx_refuses_to_load_off_apple_silicon(
    adapter: type[MlxKokoroAdapter | MlxWhisperAdapter], tmp_path: Path
) -> None:
    with pytest.raises(AdapterError, match="Apple Silicon") as info:
        adapter().load(tmp_path, "auto", {})
    assert info.value.code == "load_failed"


@pytest.mark.skipif(
    not (apple_silicon() and MLX_KOKORO),
    reason="mlx-audio runs only on Apple Silicon (macOS arm64); set VOX_TEST_MLX_KOKORO there",
)
async def test_mlx_kokoro_speaks() -> None:
    from vox_protocol import Synthesize

    adapter = MlxKokoroAdapter()
    info = adapter.load(Path(MLX_KOKORO), "auto", {})
    chunks = [c async for c in adapter.synthesize(Synthesize(id=1, text="Hello there."))]
    assert info.sample_rate == 24000
    assert sum(len(c.audio) for c in chunks) > 0
