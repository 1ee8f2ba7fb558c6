"""Directory sources through the real server: nothing outside the allowed roots is read or told.

Issue 13: /api/register with an absolute path and then /api/pull copied any directory the
server could read (a 0600 private key became a 0644 copy), and register told whether a path
existed. Over HTTP only --allow-local-dir roots are read now; `vox pull ./dir` uploads.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VoxServer, wer
from tests.reliability.store_util import (
    JOE,
    SENTENCE,
    WHISPER,
    listed,
    model_dir,
    pull,
    start_server,
    vox,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("allowed-root")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, allowed: Path) -> Iterator[VoxServer]:
    server = start_server(tmp_path_factory, "store-safety", {"VOX_ALLOW_LOCAL_DIR": str(allowed)})
    yield server
    server.stop()


def joe_copy(server: VoxServer, directory: Path) -> Path:
    """The installed joe voice's files, as a user's own voice directory would hold them."""
    shutil.copytree(model_dir(server, JOE), directory, ignore=shutil.ignore_patterns("manifest*"))
    return directory


def private_files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_register_of_an_outside_path_is_refused_like_a_missing_one(
    server: VoxServer, allowed: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret")
    (keys / "id_ed25519").chmod(0o600)
    (allowed / "escape").symlink_to(keys)
    sources = [
        "/",
        "/proc/self",
        "/etc",
        str(keys),
        str(tmp_path / "missing"),
        str(allowed / ".." / keys.relative_to(tmp_path.parent)),
        str(allowed / "escape"),  # a link inside the root to a directory outside it
        str(allowed / "missing"),
        "relative/dir",
    ]
    answers = set()
    with server.client() as client:
        for source in sources:
            body = {"name": "evil:copy", "source": source, "adapter": "piper"}
            response = client.post("/api/register", json=body)
            assert response.status_code == 400, (source, response.text)
            answers.add(json.dumps(response.json()["error"]))  # all but the request id
        # One answer for all: it tells nothing about what exists on the server's machine.
        assert len(answers) == 1, answers
        assert "--allow-local-dir" in answers.pop()
        assert client.post("/api/show", json={"model": "evil:copy"}).status_code == 404
        assert (
            client.post("/api/pull", json={"model": "evil:copy", "stream": False}).status_code
            == 404
        )
    assert list(server.home.rglob("id_ed25519")) == []


def test_a_directory_under_the_allowed_root_is_registered_pulled_and_private(
    server: VoxServer, allowed: Path
) -> None:
    voice = joe_copy(server, allowed / "joe")
    (voice / "en_US-joe-medium.onnx").chmod(0o644)
    (voice / "en_US-joe-medium.onnx.json").chmod(0o600)
    name = "piper:allowed-root"
    with server.client() as client:
        body = {"name": name, "source": str(voice), "adapter": "piper"}
        response = client.post("/api/register", json=body)
        assert response.status_code == 200, response.text
        assert pull(client, name)[-1] == {"status": "success", "model": name}
        assert name in listed(client)
        shown = client.post("/api/show", json={"model": name}).json()
        assert shown["source"] == {"kind": "local", "path": str(voice.resolve()), "files": []}
        assert {f["path"] for f in shown["files"]} == {
            "MODEL_CARD",
            "en_US-joe-medium.onnx",
            "en_US-joe-medium.onnx.json",
        }
        modes = private_files(model_dir(server, name))
        modes.pop("manifest.json")  # the store's own record
        assert set(modes.values()) == {0o600}, modes
        assert stat.S_IMODE(model_dir(server, name).stat().st_mode) == 0o700
        assert client.request("DELETE", "/api/delete", json={"model": name}).status_code == 200


def test_cli_pull_of_a_directory_uploads_it_and_the_voice_speaks(
    server: VoxServer, tmp_path: Path
) -> None:
    # Outside the allowed root: the CLI reads the files itself and sends them.
    joe_copy(server, tmp_path / "myvoice")
    (tmp_path / "myvoice" / "en_US-joe-medium.onnx").chmod(0o640)
    name = "piper:cli-dir"
    done = vox(server, "pull", "./myvoice", "--adapter", "piper", "--as", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"pulled {name}" in done.stdout
    modes = private_files(model_dir(server, name))
    modes.pop("manifest.json")
    assert set(modes.values()) == {0o600}, modes
    with server.client() as client:
        assert name in listed(client)
        speech = client.post("/api/synthesize", json={"model": name, "input": SENTENCE})
        assert speech.status_code == 200, speech.text
        files = {"file": ("joe.wav", speech.content, "audio/wav")}
        heard = client.post("/api/transcribe", files=files, data={"model": WHISPER})
        assert wer(SENTENCE, heard.json()["text"]) <= 0.15, heard.text
    # Sent again (the voice changed): the new files replace the old ones.
    (tmp_path / "myvoice" / "MODEL_CARD").write_text("second version")
    again = vox(server, "pull", "./myvoice", "--adapter", "piper", "--as", name, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (model_dir(server, name) / "MODEL_CARD").read_text() == "second version"
    assert vox(server, "rm", name).returncode == 0


def test_an_upload_must_be_a_tar_of_plain_files(server: VoxServer) -> None:
    params = {"name": "piper:bad-upload", "adapter": "piper"}
    link = tarfile.TarInfo("voice.onnx")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        tar.addfile(link)
    with server.client() as client:
        # A web page can send text/plain without a preflight; a tar it cannot.
        plain = client.post("/api/upload", params=params, content=body.getvalue(),
                            headers={"Content-Type": "text/plain"})  # fmt: skip
        assert plain.status_code == 400, plain.text
        linked = client.post("/api/upload", params=params, content=body.getvalue(),
                             headers={"Content-Type": "application/x-tar"})  # fmt: skip
        assert linked.status_code == 400, linked.text
        assert "only regular files" in linked.json()["error"]["message"]
        assert "piper:bad-upload" not in listed(client)
