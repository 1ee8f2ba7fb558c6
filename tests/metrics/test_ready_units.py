"""Readiness reasons with fakes: an unreadable store, a preload loading or failed, a runner
that answers, one that does not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from vox_control import ready
from vox_control.ready import not_ready
from vox_control.settings import Settings
from vox_protocol import Voices


class Runner:
    def __init__(self, *, frozen: bool = False) -> None:
        self.frozen = frozen

    async def voices(self) -> Voices:
        if self.frozen:
            await asyncio.Event().wait()
        return Voices(id=1, voices=[])


def services(root: Path, preload: tuple[str, ...], loaded: dict[str, Runner]) -> Any:
    models = [SimpleNamespace(name=n, runner=r) for n, r in loaded.items()]
    return SimpleNamespace(
        store=SimpleNamespace(root=root),
        settings=Settings(home=root, preload=preload),
        answered=set(),
        preload_errors={},
        scheduler=SimpleNamespace(loaded=lambda: models),
    )


async def test_ready_when_nothing_is_preloaded_and_the_store_reads(tmp_path: Path) -> None:
    assert await not_ready(services(tmp_path, (), {})) is None
    # The default models loaded by default are a head start, not a condition of readiness.
    assert await not_ready(services(tmp_path, ("defaults",), {})) is None
    reason = await not_ready(services(tmp_path / "missing", (), {}))
    assert reason is not None
    assert "not readable" in reason


async def test_preloads_must_answer_and_keep_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ready, "PING_S", 0.05)
    runner = Runner()
    svc = services(tmp_path, ("defaults", "a"), {"a": runner})
    assert await not_ready(svc) == "a is still loading (--preload models must answer first)"
    svc.preload_errors["a"] = "boom"
    assert await not_ready(svc) == "preloading a failed: boom"
    svc.answered.add("a")
    assert await not_ready(svc) is None
    runner.frozen = True
    assert await not_ready(svc) == "the runner for a did not answer within 0.05s"


def test_the_open_metrics_listener_stays_on_loopback_unless_insecure(tmp_path: Path) -> None:
    from vox_control.auth import AuthConfigError, check_bind
    from vox_control.settings import Settings

    check_bind(Settings(home=tmp_path, metrics_addr=":9464"), None)
    check_bind(Settings(home=tmp_path, metrics_addr="127.0.0.1:9464"), "token")
    check_bind(Settings(home=tmp_path, metrics_addr="0.0.0.0:9464", insecure=True), None)
    with pytest.raises(AuthConfigError, match=r"refusing to serve metrics on 0\.0\.0\.0"):
        check_bind(Settings(home=tmp_path, metrics_addr="0.0.0.0:9464"), "token")
    with pytest.raises(AuthConfigError, match="needs a port"):
        check_bind(Settings(home=tmp_path, metrics_addr="127.0.0.1"), None)
    with pytest.raises(AuthConfigError, match="not a port"):
        check_bind(Settings(home=tmp_path, metrics_addr="127.0.0.1:http"), None)
