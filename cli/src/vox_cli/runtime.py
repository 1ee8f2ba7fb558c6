"""`vox ps` (loaded models, memory, until when) and `vox stop NAME` (unload a model)."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console
from rich.table import Table

from vox_cli.client import VoxClient

Host = Annotated[str | None, Parameter(help="Server address (host, host:port or URL).")]


def until(model: dict[str, Any]) -> str:
    """When an idle model unloads, in words: "4 minutes from now", "forever", "in use"."""
    if model.get("state") == "unloading":
        return "unloading"
    seconds = model.get("expires_in_s")
    if seconds is None:
        return "forever" if model.get("keep_alive_s") is None else "in use"
    if seconds < 1:
        return "now"
    if seconds < 90:
        return f"{seconds:.0f} seconds from now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes from now"
    return f"{seconds / 3600:.0f} hours from now"


def ps(*, host: Host = None) -> None:
    """List loaded models: runner, device, measured memory, load, and when they unload."""
    with VoxClient(host) as client:
        body = client.get("/api/ps")
    table = Table(
        "NAME", "PID", "DEVICE", "PROVIDERS", "MEMORY", "STATE", "IN FLIGHT", "QUEUED", "UNTIL",
        box=None,
    )  # fmt: skip
    for m in body["models"]:
        memory = f"{m['memory_mb']:.0f} MB" + ("" if m.get("memory_measured") else " (est.)")
        table.add_row(
            m["name"],
            str(m["pid"]),
            m["device"],
            # What the runner really got (CUDA may have fallen back to CPU).
            ",".join(m.get("providers") or []) or "-",
            memory,
            m["state"],
            str(m["in_flight"]),
            str(m["queued"]),
            until(m),
        )
    loading = body.get("loading")
    if loading:
        table.add_row(
            loading["name"],
            str(loading.get("pid") or "-"),
            loading["device"],
            "-",
            f"{loading['memory_mb']:.0f} MB (est.)",
            "loading",
            "0",
            str(loading.get("waiting", 0)),
            "-",
        )
    for f in body.get("failed") or []:
        table.add_row(f["name"], "-", "-", "-", "-", f"failed: {f['error']}", "0", "0", "-")
    # One line per runner, as `ollama ps` prints (and `vox ps | grep` needs): a narrow
    # terminal folds long lines, rather than rich wrapping every cell into a column of words.
    console = Console()
    natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    Console(width=max(console.width, natural)).print(table)


def stop(name: str, /, *, host: Host = None) -> None:
    """Unload a model now (or as soon as its in-flight requests finish)."""
    with VoxClient(host) as client:
        body = client.post_json("/api/unload", {"model": name}).json()
    messages = {
        "unloaded": f"stopped {name}",
        "unloading": f"{name} is busy; it unloads when its requests finish",
        "not_loaded": f"{name} is not loaded",
    }
    Console(stderr=True).print(messages.get(body["status"], body["status"]))
