"""A third-party adapter package (examples/vox-adapter-tone) from a project dir and from a
wheel: registered, pulled into its own sandbox, serving speech, then removed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.adapters.tone import copy_example, pull, speak, tone_server

pytestmark = pytest.mark.e2e


def _register_pull_speak_remove(root: Path, package: str, model_dir: Path) -> None:
    with tone_server(root) as server:
        with server.client() as client:
            body = {
                "name": "tone:demo",
                "type": "tts",
                "adapter": "tone",
                "source": str(model_dir),
                "adapter_package": package,
            }
            registered = client.post("/api/register", json=body)
            assert registered.status_code == 200, registered.text
        events = pull(server, "tone:demo")
        assert events[-1]["status"] == "success", events[-5:]
        sandboxes = [p.name for p in (server.home / "sandboxes").iterdir() if p.is_dir()]
        # Its own venv, named after the package, never the bundled extras' "tone".
        assert (
            [n for n in sandboxes if n.startswith("tone")]
            == [n for n in sandboxes if n.startswith("tone-pkg-")]
            != []
        )
        speak(server, "tone:demo")
        speak(server, "tone:demo", voice="high")
        with server.client() as client:
            shown = client.post("/api/show", json={"model": "tone:demo"}).json()
            assert shown["adapter_package"] == package
            assert "tone-pkg-" in (shown["sandbox"] or "")
            deleted = client.request("DELETE", "/api/delete", json={"model": "tone:demo"})
            assert deleted.status_code == 200, deleted.text
            gone = client.post("/v1/audio/speech", json={"model": "tone:demo", "input": "hi"})
            assert gone.status_code == 404, gone.text


def test_adapter_package_from_project_dir(tmp_path: Path) -> None:
    project, model_dir = copy_example(tmp_path)
    _register_pull_speak_remove(tmp_path, str(project), model_dir)


def test_adapter_package_from_wheel(tmp_path: Path) -> None:
    project, model_dir = copy_example(tmp_path)
    dist = tmp_path / "dist"
    subprocess.run(
        [find_uv_bin(), "build", "--wheel", "--no-config", "--out-dir", str(dist), str(project)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("vox_adapter_tone-*.whl")
    _register_pull_speak_remove(tmp_path, str(wheel), model_dir)


def test_register_refuses_package_outside_allowed_roots(tmp_path: Path) -> None:
    _project, model_dir = copy_example(tmp_path / "allowed")
    with tone_server(tmp_path / "allowed") as server, server.client() as client:
        for package, param in (
            ("/etc", "adapter_package"),
            (str(tmp_path / "elsewhere.whl"), "adapter_package"),
            ("vox-adapter-tone>=0.1", "adapter_package"),  # not pinned
        ):
            body = {
                "name": "tone:bad",
                "type": "tts",
                "adapter": "tone",
                "source": str(model_dir),
                "adapter_package": package,
            }
            refused = client.post("/api/register", json=body)
            assert refused.status_code == 400, (package, refused.text)
            assert refused.json()["error"]["param"] == param, refused.text


def test_clients_name_no_package_unless_allowed(tmp_path: Path) -> None:
    _project, model_dir = copy_example(tmp_path)
    env = {"VOX_ALLOW_ADAPTER_PACKAGES": "false"}
    with tone_server(tmp_path, **env) as server, server.client() as client:
        body = {
            "name": "tone:demo",
            "type": "tts",
            "adapter": "tone",
            "source": str(model_dir),
            "adapter_package": "vox-adapter-tone==0.1.0",
        }
        refused = client.post("/api/register", json=body)
        assert refused.status_code == 400, refused.text
        assert "--allow-adapter-packages" in refused.json()["error"]["message"]
        assert not (server.home / "catalog" / "tone").exists()


def test_cli_pull_dir_with_adapter_package(tmp_path: Path) -> None:
    """`vox pull ./model --adapter-package ./project`: the CLI uploads the model, the server
    installs the package (a path under its allowed root) and the model speaks."""
    project, model_dir = copy_example(tmp_path)
    with tone_server(tmp_path) as server:
        cmd = [sys.executable, "-m", "vox_cli.main", "pull", str(model_dir), "--host", server.url]
        flags = ["--adapter", "tone", "--type", "tts", "--as", "tone:cli"]
        out = subprocess.run(
            [*cmd, *flags, "--adapter-package", str(project)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        speak(server, "tone:cli")
        plain = subprocess.run(
            [*cmd[:4], "piper:en-us-joe-medium", "--host", server.url, "--adapter-package", "x==1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert plain.returncode != 0
        assert "--adapter-package goes with" in plain.stderr + plain.stdout
