"""Vox sandboxes: one isolated uv virtualenv per adapter, holding vox-protocol and vox-runner."""

from vox_sandboxes.errors import SandboxError
from vox_sandboxes.manager import MANIFEST_NAME, Sandbox, SandboxManager
from vox_sandboxes.package import AdapterPackage, parse_package
from vox_sandboxes.source import RunnerSource
from vox_sandboxes.uvcli import ADAPTER_GPU_SWAPS, GpuSwap

__all__ = [
    "ADAPTER_GPU_SWAPS",
    "MANIFEST_NAME",
    "AdapterPackage",
    "GpuSwap",
    "RunnerSource",
    "Sandbox",
    "SandboxError",
    "SandboxManager",
    "parse_package",
]
