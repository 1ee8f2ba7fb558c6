"""Local sources: allowed roots, one refusal for every forbidden path, private copies, uploads."""

from __future__ import annotations

import asyncio
import io
import stat
import tarfile
import threading
from pathlib import Path

import pytest
from vox_cli.models import tar_stream
from vox_control.store.disk import Store
from vox_control.store.entries import CatalogEntry, HFFile, LocalSource
from vox_control.store.sources import pull_model
from vox_control.store.sources.base import Emitter, PullError
from vox_control.store.sources.local import (
    REFUSED,
    BadUpload,
    LocalDirRefused,
    allowed_dir,
    extract_upload,
    install_upload,
    walk_files,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    allowed = tmp_path / "allowed"
    (allowed / "voice" / "sub").mkdir(parents=True)
    (allowed / "voice" / "model.onnx").write_bytes(b"onnx" * 100)
    (allowed / "voice" / "sub" / "config.json").write_text("{}")
    return allowed


def refusal(path: str, roots: list[Path]) -> str:
    with pytest.raises(LocalDirRefused) as caught:
        allowed_dir(path, roots)
    return str(caught.value)


def test_paths_outside_the_roots_get_the_same_answer_as_missing_ones(
    tmp_path: Path, root: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (root / "escape").symlink_to(secret)
    answers = {
        refusal(p, [root])
        for p in (
            "/",
            "/proc/self",
            str(secret),
            str(tmp_path / "missing"),
            str(root / "missing"),
            str(root / ".." / "secret"),
            str(root / "escape"),
            str(root / "voice" / "model.onnx"),  # a file, not a directory
        )
    }
    assert answers == {REFUSED}
    assert refusal(str(root / "voice"), []) == REFUSED  # no roots: nothing is allowed
    assert allowed_dir(str(root / "voice"), [root]) == (root / "voice").resolve()
    assert allowed_dir(str(root), [root]) == root.resolve()


def test_copies_are_private_and_never_wider_than_the_source(tmp_path: Path, root: Path) -> None:
    (root / "voice" / "model.onnx").chmod(0o644)
    (root / "voice" / "sub" / "config.json").chmod(0o400)
    store = Store(tmp_path / "models")
    entry = CatalogEntry(
        name="mine:v", type="tts", adapter="piper", source=LocalSource(path=str(root / "voice"))
    )
    asyncio.run(pull_model(entry, store, local_roots=[root]))
    base = store.path("mine:v")
    assert stat.S_IMODE((base / "model.onnx").stat().st_mode) == 0o600
    assert stat.S_IMODE((base / "sub" / "config.json").stat().st_mode) == 0o400
    assert stat.S_IMODE((base / "sub").stat().st_mode) == 0o700


def test_a_pinned_file_through_a_link_out_of_the_directory_is_refused(
    tmp_path: Path, root: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_rsa").write_text("key")
    (root / "voice" / "link").symlink_to(outside)
    source = LocalSource(path=str(root / "voice"), files=[HFFile(path="link/id_rsa")])
    entry = CatalogEntry(name="mine:v", type="tts", adapter="piper", source=source)
    with pytest.raises(PullError, match="not in"):
        asyncio.run(pull_model(entry, Store(tmp_path / "models"), local_roots=[root]))


def extract(data: bytes, staging: Path) -> list[str]:
    staging.mkdir(exist_ok=True)
    files = extract_upload(io.BytesIO(data), staging, Emitter(None), threading.Event())
    return [f.path for f in files]


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def member(name: str, type: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = type, link, 0o644
    return info


def test_the_cli_stream_round_trips_with_modes_kept_private(tmp_path: Path, root: Path) -> None:
    (root / "voice" / "model.onnx").chmod(0o640)
    files = walk_files(root / "voice")
    data = b"".join(tar_stream(files))
    assert extract(data, tmp_path / "staging") == ["model.onnx", "sub/config.json"]
    got = tmp_path / "staging" / "model.onnx"
    assert got.read_bytes() == (root / "voice" / "model.onnx").read_bytes()
    assert stat.S_IMODE(got.stat().st_mode) == 0o600
    # The stdlib reads the CLI's stream as an ordinary tar.
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["model.onnx", "sub/config.json"]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ((member("link", tarfile.SYMTYPE, "/etc/passwd"),), "only regular files"),
        ((member("hard", tarfile.LNKTYPE, "x"),), "only regular files"),
        ((member("dev", tarfile.CHRTYPE),), "only regular files"),
        ((member("/etc/cron.d/x"),), "relative POSIX path"),
        ((member("../x"),), "must not contain"),
        ((member("a/./b"),), "must not contain"),
        ((member("manifest.json"),), "reserved"),
        ((member("a"), member("a")), "appears twice"),
        ((member("a"), member("a/b")), "clashes"),
        ((), "holds no files"),
    ],
)
def test_hostile_uploads_are_refused(
    tmp_path: Path, members: tuple[tarfile.TarInfo, ...], message: str
) -> None:
    data = tar_of(*((m, b"x") for m in members))
    with pytest.raises(BadUpload, match=message):
        extract(data, tmp_path / "staging")


def test_a_stream_that_is_not_a_tar_or_ends_early_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadUpload, match="not a valid tar"):
        extract(b"PK\x03\x04 not a tar" * 100, tmp_path / "s1")
    whole = tar_of((member("model.onnx"), b"w" * 5000))
    with pytest.raises(PullError):
        extract(whole[:2048], tmp_path / "s2")


def test_an_upload_replaces_the_installed_model_and_leaves_no_staging(
    tmp_path: Path, root: Path
) -> None:
    store = Store(tmp_path / "models")
    entry = CatalogEntry(
        name="mine:v", type="tts", adapter="piper", source=LocalSource(path="/client/voice")
    )
    first = b"".join(tar_stream(walk_files(root / "voice")))
    asyncio.run(install_upload(entry, store, io.BytesIO(first)))
    (root / "voice" / "model.onnx").write_bytes(b"v2")
    second = b"".join(tar_stream(walk_files(root / "voice")))
    manifest = asyncio.run(install_upload(entry, store, io.BytesIO(second)))
    assert (store.path("mine:v") / "model.onnx").read_bytes() == b"v2"
    assert store.manifest("mine:v") == manifest
    with pytest.raises(BadUpload):
        asyncio.run(install_upload(entry, store, io.BytesIO(b"junk" * 300)))
    assert (store.path("mine:v") / "model.onnx").read_bytes() == b"v2"  # the old one stays
    assert list(store.staging_root.iterdir()) == []


def test_an_entry_outside_the_roots_is_refused_at_pull_time(tmp_path: Path, root: Path) -> None:
    # A user entry written before roots existed, or a directory swapped for a link since.
    (root / "later").symlink_to(tmp_path)
    store = Store(tmp_path / "models")
    for path in (str(tmp_path), str(root / "later")):
        entry = CatalogEntry(
            name="old:v", type="tts", adapter="piper", source=LocalSource(path=path)
        )
        with pytest.raises(LocalDirRefused):
            asyncio.run(pull_model(entry, store, local_roots=[root]))
    assert store.list() == []
    assert list(store.staging_root.iterdir()) == []
