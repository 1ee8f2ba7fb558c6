"""Pure scheduling decisions: keep-alive and size parsing, "does it fit", "whom to evict"."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FOREVER = math.inf  # a negative keep_alive: never unload when idle
# The longest finite keep_alive (a year): past it the expiry time is no date (/api/ps failed
# with 500); "forever" is spelled -1.
MAX_KEEP_ALIVE = 365 * 86400.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(%|[kmgt]i?b?|b)?$", re.IGNORECASE)
_SIZE_MB = {"b": 1 / 2**20, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}


def parse_keep_alive(value: str | float | None) -> float | None:
    """Ollama's keep_alive: seconds as a number, or a duration ("5m", "1h30m", "250ms").

    None means "use the default"; 0 unloads as soon as the model is idle; any negative value
    keeps it loaded forever (FOREVER); more than MAX_KEEP_ALIVE is refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration like 5m, 30s, 0 or -1, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if not text:
            return None
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = float(body)  # a bare number is seconds
        except ValueError:
            parts = _DURATION_PART.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"keep_alive {value!r} is not a duration; use e.g. 5m, 30s, 1h, 0 or -1"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        seconds *= sign
    if math.isnan(seconds):
        raise ValueError("keep_alive must be a number of seconds or a duration")
    if seconds > MAX_KEEP_ALIVE:
        raise ValueError(
            f"keep_alive {value!r} is longer than the maximum, 8760h (a year); "
            "use -1 to keep the model loaded until it is unloaded"
        )
    return FOREVER if seconds < 0 else seconds


def parse_size_mb(value: str, total_mb: float) -> float:
    """A memory size in MB from "2GB", "512M", "1.5GiB", "70%" (of ``total_mb``) or "800" (MB)."""
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(f"memory size {value!r} is not understood; use e.g. 4GB, 800MB or 70%")
    number, unit = float(match.group(1)), (match.group(2) or "m").lower()
    if unit == "%":
        if not 0 < number <= 100:
            raise ValueError(f"memory size {value!r}: a percentage must be in (0, 100]")
        return total_mb * number / 100
    return number * _SIZE_MB[unit[0]]


@dataclass(frozen=True)
class Resident:
    """A runner that holds memory: loaded, or still exiting after an unload."""

    name: str
    pool: str  # "cpu" or "cuda:N"
    mb: float
    refcount: int
    last_used: float
    evictable: bool = True  # False while unloading: its memory is on the way out already


@dataclass(frozen=True)
class Pool:
    """One device's memory as the scheduler sees it right now."""

    name: str
    budget_mb: float  # what Vox may use on this device
    driver_free_mb: float  # what the OS or driver reports free now
    headroom_mb: float = 0.0


def free_mb(pool: Pool, residents: Sequence[Resident]) -> float:
    """The smaller of the driver's free memory (less headroom) and budget minus runners' use."""
    used = sum(r.mb for r in residents if r.pool == pool.name)
    return min(pool.driver_free_mb - pool.headroom_mb, pool.budget_mb - used)


def fits(need_mb: float, pool: Pool, residents: Sequence[Resident], max_loaded: int = 0) -> bool:
    if max_loaded and len(residents) >= max_loaded:
        return False
    return need_mb <= free_mb(pool, residents)


@dataclass(frozen=True)
class Plan:
    action: Literal["load", "evict", "wait", "never"]
    victim: Resident | None = None
    reason: str = ""


def plan(need_mb: float, pool: Pool, residents: Sequence[Resident], max_loaded: int = 0) -> Plan:
    """What to do next to load a model needing ``need_mb`` on ``pool``: one step at a time.

    The caller carries out an eviction and asks again (the measured picture changes after each
    unload), so this never plans a whole batch on stale numbers.
    """
    if fits(need_mb, pool, residents, max_loaded):
        return Plan("load")
    if need_mb > pool.budget_mb:
        return Plan(
            "never",
            reason=f"needs {need_mb:.0f} MB but the {pool.name} memory budget is "
            f"{pool.budget_mb:.0f} MB (set --memory-budget / VOX_MEMORY_BUDGET)",
        )
    victim = pick_victim(pool, residents, max_loaded)
    if victim is not None:
        return Plan("evict", victim=victim)
    return Plan("wait", reason=_why_full(need_mb, pool, residents, max_loaded))


def pick_victim(pool: Pool, residents: Sequence[Resident], max_loaded: int = 0) -> Resident | None:
    """The least recently used idle runner worth unloading, or None.

    Memory is per device, so only runners on the same pool help; when the count limit is what
    blocks, any idle runner does.
    """
    count_bound = bool(max_loaded) and len(residents) >= max_loaded
    idle = [
        r
        for r in residents
        if r.refcount == 0 and r.evictable and (count_bound or r.pool == pool.name)
    ]
    return min(idle, key=lambda r: r.last_used, default=None)


def _why_full(need_mb: float, pool: Pool, residents: Sequence[Resident], max_loaded: int) -> str:
    if max_loaded and len(residents) >= max_loaded:
        return f"{len(residents)} models are loaded and busy (--max-loaded {max_loaded})"
    busy = ", ".join(sorted(r.name for r in residents if r.pool == pool.name)) or "none"
    return (
        f"needs {need_mb:.0f} MB, {max(free_mb(pool, residents), 0):.0f} MB free on "
        f"{pool.name}; busy runners: {busy}"
    )
