"""The Ray Serve application: `serve run vox_cluster.app:build replicas=2 ...` or a config file.

Arguments (all optional; see docs/cluster.md for a full serve config):
  replicas            Vox nodes (Ray Serve replicas), default 2
  models_per_replica  models each node keeps loaded (Ray's multiplexing LRU), default 2
  num_cpus, num_gpus  Ray resources per replica (fractions allowed), default 1 and 0
  memory_budget       VOX_MEMORY_BUDGET of each node ("20GB", "90%"), default Vox's own
  home                one shared model store for every node (a shared filesystem); empty:
                      each node pulls into its own home under /tmp/vox-cluster
  device              VOX_DEVICE of each node, default auto
  env                 more VOX_* variables for every node (a mapping)
  health_period_s     seconds between Ray's health probes of a node, default 2
"""

from __future__ import annotations

from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment

from vox_cluster.ingress import Registry, VoxIngress
from vox_cluster.node import VoxNode

NODE_KEYS = ("home", "memory_budget", "device", "env")


def _deployment(cls: type) -> Deployment:
    # serve.deployment is annotated as returning the decorator even when given the class.
    return cast(Deployment, serve.deployment(cls))


def build(args: dict[str, Any]) -> Application:
    """The application graph: ingress -> nodes (multiplexed), both -> registry."""
    known = {"replicas", "models_per_replica", "num_cpus", "num_gpus", "health_period_s"}
    unknown = set(args) - known - set(NODE_KEYS)
    if unknown:
        raise ValueError(f"unknown vox_cluster arguments: {', '.join(sorted(unknown))}")
    models = int(args.get("models_per_replica", 2))
    period = float(args.get("health_period_s", 2.0))
    node = {k: args[k] for k in NODE_KEYS if k in args}
    registry = (
        _deployment(Registry)
        .options(
            name="VoxRegistry",
            num_replicas=1,
            ray_actor_options={"num_cpus": 0},
            # Every node reports every 2 s: an access log line each would bury the rest.
            logging_config={"enable_access_log": False},
        )
        .bind()
    )
    nodes = (
        _deployment(VoxNode)
        .options(
            name="VoxNode",
            num_replicas=int(args.get("replicas", 2)),
            ray_actor_options={
                "num_cpus": float(args.get("num_cpus", 1)),
                "num_gpus": float(args.get("num_gpus", 0)),
            },
            health_check_period_s=period,
            health_check_timeout_s=max(10.0, 3 * period),
            # A node loads models of its own; many in-flight requests per replica are fine.
            max_ongoing_requests=64,
        )
        .bind(registry, models, node)
    )
    return (
        _deployment(VoxIngress)
        .options(name="VoxIngress", num_replicas=1, ray_actor_options={"num_cpus": 0})
        .bind(nodes, registry)
    )
