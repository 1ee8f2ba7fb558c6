"""A real two-node Ray cluster on loopback running the Vox Serve application (vox_cluster)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

# Under `uv run`, Ray would start workers with `uv run` again in a copy of the working directory
# (a fresh venv without Ray); they must use this venv's interpreter as it is. Ray reads the
# variable when it is first imported.
os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"


@dataclass
class VoxCluster:
    """The ingress URL, the shared store, and every node PID seen (reaped at the end)."""

    url: str
    home: Path
    pids: set[int] = field(default_factory=set)

    def nodes(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = httpx.get(f"{self.url}/nodes", timeout=30).json()["nodes"]
        self.pids |= {n["pid"] for n in listed}
        return listed

    def loads(self) -> dict[str, int]:
        """How many times each model was loaded, over every node's log (runs of the scheduler)."""
        counts: dict[str, int] = {}
        for log in self.home.glob("node-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if " loaded " in line and " in " in line:
                    name = line.split(" loaded ", 1)[1].split(" ", 1)[0]
                    counts[name] = counts.get(name, 0) + 1
        return counts


@contextlib.contextmanager
def ray_cluster(tmp: Path) -> Iterator[str]:
    """A head and one worker node on loopback, each with one CPU and a resource of its own."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"worker": 1})
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        from ray import serve

        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


def deploy(tmp: Path, **args: Any) -> VoxCluster:
    from ray import serve
    from vox_cluster.app import build

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    home = tmp / "store"
    serve.run(build({"home": str(home), **args}), name="vox", route_prefix="/")
    return VoxCluster(url=f"http://127.0.0.1:{port}", home=home)


def reap(pids: set[int]) -> None:
    """Nodes a killed replica left behind: stopped by PID, never by name."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
