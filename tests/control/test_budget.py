"""The pure decisions: keep_alive and size parsing, "does it fit", "whom to evict"."""

from __future__ import annotations

import pytest
from vox_control.scheduler.budget import (
    FOREVER,
    Pool,
    Resident,
    fits,
    free_mb,
    parse_keep_alive,
    parse_size_mb,
    pick_victim,
    plan,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0),
        ("30s", 30.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        ("-1", FOREVER),
        ("-5m", FOREVER),
        ("90", 90.0),
        (12, 12.0),
        (-1, FOREVER),
        (0.5, 0.5),
        (None, None),
        ("", None),
        ("8760h", 8760 * 3600.0),  # MAX_KEEP_ALIVE, a year
        ("-9999999999999h", FOREVER),
    ],
)
def test_parse_keep_alive(value: str | float | None, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize(
    "value", ["5 minutes", "m5", "1x", "nan", True, "9999999999999h", "8761h", "inf", 1e300]
)
def test_parse_keep_alive_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="keep_alive"):
        parse_keep_alive(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "mb"),
    [("2GB", 2048.0), ("512M", 512.0), ("1.5GiB", 1536.0), ("50%", 500.0), ("800", 800.0)],
)
def test_parse_size(value: str, mb: float) -> None:
    assert parse_size_mb(value, 1000.0) == mb


@pytest.mark.parametrize("value", ["lots", "150%", "-1GB", "0%"])
def test_parse_size_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="memory size"):
        parse_size_mb(value, 1000.0)


def r(name: str, mb: float, refs: int = 0, used: float = 0.0, pool: str = "cpu") -> Resident:
    return Resident(name, pool, mb, refs, used)


def test_free_is_the_smaller_of_driver_and_budget_minus_use() -> None:
    residents = [r("a", 300), r("g", 900, pool="cuda:0")]
    assert free_mb(Pool("cpu", 1000, 5000, 100), residents) == 700
    assert free_mb(Pool("cpu", 1000, 500, 100), residents) == 400  # the OS has less
    assert fits(400, Pool("cpu", 1000, 500, 100), residents)
    assert not fits(401, Pool("cpu", 1000, 500, 100), residents)
    assert not fits(1, Pool("cpu", 1000, 5000), residents, max_loaded=2)


def test_victim_is_the_least_recently_used_idle_runner_on_the_pool() -> None:
    pool = Pool("cpu", 1000, 5000)
    residents = [
        r("busy-old", 300, refs=1, used=1),
        r("idle-new", 300, used=5),
        r("idle-old", 300, used=2),
        r("gpu-oldest", 300, used=0, pool="cuda:0"),
    ]
    victim = pick_victim(pool, residents)
    assert victim is not None
    assert victim.name == "idle-old"
    # When the count limit blocks, an idle runner on any device helps.
    victim = pick_victim(pool, residents, max_loaded=4)
    assert victim is not None
    assert victim.name == "gpu-oldest"
    assert pick_victim(pool, [r("busy", 300, refs=2)]) is None
    unloading = Resident("x", "cpu", 300, 0, 0, evictable=False)
    assert pick_victim(pool, [unloading]) is None


def test_plan_steps() -> None:
    pool = Pool("cpu", 1000, 5000)
    assert plan(500, pool, [r("a", 400)]).action == "load"
    step = plan(700, pool, [r("a", 400, used=2), r("b", 400, used=1)])
    assert step.action == "evict"
    assert step.victim is not None
    assert step.victim.name == "b"
    waiting = plan(700, pool, [r("a", 400, refs=1)])
    assert waiting.action == "wait"
    assert "busy runners: a" in waiting.reason
    never = plan(1500, pool, [])
    assert never.action == "never"
    assert "budget is 1000 MB" in never.reason
