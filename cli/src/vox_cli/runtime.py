"""`vox ps` (loaded models, memory, until when) and `vox stop NAME` (unload a model)."""

from __future__ import annotations

from typing import Any

from vox_cli.client import CLIError, Host, Json, VoxClient
from vox_cli.output import err
from vox_cli.table import print_json, print_rows


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


def ps(*, json: Json = False, host: Host = None) -> None:
    """List loaded models: runner, device, measured memory, load, and when they unload."""
    with VoxClient(host) as client:
        body = client.get("/api/ps")
    if json:
        return print_json(body)
    rows: list[tuple[str, ...]] = []
    for m in body["models"]:
        memory = f"{m['memory_mb']:.0f} MB" + ("" if m.get("memory_measured") else " (est.)")
        # What the runner really got (CUDA may have fallen back to CPU).
        providers = ",".join(m.get("providers") or []) or "-"
        rows.append(
            (m["name"], str(m["pid"]), m["device"], providers, memory, m["state"],
             str(m["in_flight"]), str(m["queued"]), until(m))
        )  # fmt: skip
    if loading := body.get("loading"):
        rows.append(
            (loading["name"], str(loading.get("pid") or "-"), loading["device"], "-",
             f"{loading['memory_mb']:.0f} MB (est.)", "loading", "0",
             str(loading.get("waiting", 0)), "-")
        )  # fmt: skip
    for name in body.get("preloading") or []:  # started with the server, loading ahead
        rows.append((name, "-", "-", "-", "-", "preloading", "0", "0", "-"))
    for f in body.get("failed") or []:
        rows.append((f["name"], "-", "-", "-", "-", f"failed: {f['error']}", "0", "0", "-"))
    columns = ("NAME", "PID", "DEVICE", "PROVIDERS", "MEMORY", "STATE", "IN FLIGHT", "QUEUED")
    print_rows((*columns, "UNTIL"), rows)
    for name, server in (body.get("sessions") or {}).items():  # protocols beside HTTP (Wyoming)
        sessions = server.get("sessions") or []
        busy = sum(1 for s in sessions if s.get("state") != "idle")
        print(f"{name} on {server.get('listening')}: {len(sessions)} session(s), {busy} busy")


def stop(name: str, /, *, host: Host = None) -> None:
    """Unload a model now (or as soon as its in-flight requests finish).

    Parameters
    ----------
    name
        A loaded model (`vox ps`).
    """
    with VoxClient(host) as client:
        body = client.post_json("/api/unload", {"model": name})
    if body["status"] == "not_loaded":
        # As `ollama stop` of a model that is not running: an error, exit 1.
        raise CLIError(f"{name} is not loaded")
    messages = {
        "unloaded": f"stopped {name}",
        "unloading": f"{name} is busy; it unloads when its requests finish",
    }
    err().print(messages.get(body["status"], body["status"]))
