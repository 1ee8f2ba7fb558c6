"""adapter_package specs: what parses, what is refused, and how sandboxes are told apart."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from vox_control.store.entries import CatalogEntry, LocalSource
from vox_sandboxes import SandboxError, parse_package
from vox_sandboxes.package import resolve_package
from vox_sandboxes.source import RunnerSource
from vox_sandboxes.uvcli import install_command

from tests.adapters.tone import EXAMPLE


@pytest.mark.parametrize(
    ("spec", "kind", "name"),
    [
        ("vox-adapter-tone==0.1.0", "pypi", "vox-adapter-tone"),
        ("Vox_Adapter.Tone == 0.1.0", "pypi", "vox-adapter-tone"),
        ("/w/vox_adapter_tone-0.1.0-py3-none-any.whl", "wheel", "vox-adapter-tone"),
        ("/w/vox-adapter-tone", "project", ""),
    ],
)
def test_specs_that_parse(spec: str, kind: str, name: str) -> None:
    package = parse_package(spec)
    assert (package.kind, package.name) == (kind, name)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "vox-adapter-tone",
        "vox-adapter-tone>=0.1",
        "vox-adapter-tone==0.*",
        "vox-adapter-tone==0.1,!=0.2",
        "vox-adapter-tone[gpu]==0.1",
        "vox-adapter-tone @ https://example.com/x.whl",
        "relative/dir",
        "/w/../etc",
        "/w/not-a-wheel.whl",
        "x==1\n--index-url=http://evil",
        "x" * 2000,
    ],
)
def test_specs_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="adapter_package"):
        parse_package(spec)


def test_two_packages_never_share_a_sandbox_key() -> None:
    keys = {parse_package(s).key for s in ("a==1", "a==2", "/w/a", "/w/b")}
    assert len(keys) == 4


def test_resolve_reads_the_project_name_and_checks_files(tmp_path: Path) -> None:
    assert resolve_package(parse_package(str(EXAMPLE))).name == "vox-adapter-tone"
    with pytest.raises(SandboxError, match="pyproject"):
        resolve_package(parse_package(str(tmp_path)))
    with pytest.raises(SandboxError, match="not a file"):
        resolve_package(parse_package(str(tmp_path / "a-1.0-py3-none-any.whl")))


def test_install_command_takes_the_bare_runner_and_the_package(tmp_path: Path) -> None:
    source = RunnerSource.from_requirements("vox-protocol==0.1.0", "vox-runner==0.1.0")
    package = resolve_package(parse_package(str(EXAMPLE)))
    cmd = install_command("uv", tmp_path / "python", source, "tone", package=package)
    assert cmd[-3:] == ["vox-protocol==0.1.0", "vox-runner==0.1.0", str(EXAMPLE)]
    assert "vox-adapter-tone" in cmd  # --refresh-package: a project dir is rebuilt each time


def test_catalog_entry_validates_the_spec() -> None:
    base = {"name": "tone:demo", "type": "tts", "adapter": "tone"}
    entry = CatalogEntry(**base, source=LocalSource(path="/m"), adapter_package="tone-x==1.0")
    assert msgspec.json.decode(msgspec.json.encode(entry), type=CatalogEntry) == entry
    with pytest.raises(ValueError, match="pin one version"):
        CatalogEntry(**base, source=LocalSource(path="/m"), adapter_package="tone-x")
