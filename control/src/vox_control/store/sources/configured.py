"""Which package index the user configured: Vox's own setting, else uv's, else pip's.

Order: ``VOX_PYPI_INDEX``; ``UV_INDEX_URL`` / ``UV_DEFAULT_INDEX``; uv.toml (``UV_CONFIG_FILE``
or the user's and the system's); ``PIP_INDEX_URL``; pip.conf (the files pip itself reads,
``PIP_CONFIG_FILE`` last); PyPI. Only the default index is followed: extra indexes are not.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_INDEX_URL = "https://pypi.org/simple"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _config_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config")


def _config_dirs(env: Mapping[str, str]) -> list[Path]:
    return [Path(d) for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]


def _uv_index(doc: Mapping[str, Any]) -> str | None:
    for index in doc.get("index", []) if isinstance(doc.get("index"), list) else []:
        if isinstance(index, dict) and index.get("default") and isinstance(index.get("url"), str):
            return str(index["url"])
    for table in (doc, doc.get("pip")):
        if isinstance(table, dict) and isinstance(table.get("index-url"), str):
            return str(table["index-url"])
    return None


def uv_toml(env: Mapping[str, str]) -> str | None:
    """The default index of uv's configuration, user file over system files."""
    if env.get("UV_NO_CONFIG", "").lower() in ("1", "true", "yes"):
        return None
    explicit = env.get("UV_CONFIG_FILE")
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [_config_home(env) / "uv" / "uv.toml"]
        candidates += [d / "uv" / "uv.toml" for d in _config_dirs(env)]
        candidates.append(Path("/etc/uv/uv.toml"))
    for path in candidates:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if found := _uv_index(doc):
            return found
    return None


def pip_conf(env: Mapping[str, str]) -> str | None:
    """``index-url`` from pip's configuration files; later files win, [install] over [global]."""
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return None  # pip's own way of saying "no configuration files"
    home = _home(env)
    files = [d / "pip" / "pip.conf" for d in reversed(_config_dirs(env))]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf"]
    files += [home / "Library" / "Application Support" / "pip" / "pip.conf"]
    files += [_config_home(env) / "pip" / "pip.conf"]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if explicit:
        files.append(Path(explicit))
    parser = configparser.RawConfigParser()
    found: str | None = None
    for path in files:
        parser.clear()
        try:
            parser.read_string(path.read_text(), source=str(path))
        except (OSError, UnicodeDecodeError, configparser.Error):
            continue
        for section in ("global", "install"):
            for key in ("index-url", "index_url"):
                value = parser.get(section, key, fallback="").strip()
                if value:
                    found = value
    return found


def configured_index(env: Mapping[str, str] | None = None) -> str:
    """The URL of the index pulls should use (it may carry credentials: keep it out of logs)."""
    env = os.environ if env is None else env
    for var in ("VOX_PYPI_INDEX", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        if env.get(var, "").strip():
            return env[var].strip()
    if found := uv_toml(env):
        return found
    if env.get("PIP_INDEX_URL", "").strip():
        return env["PIP_INDEX_URL"].strip()
    return pip_conf(env) or DEFAULT_INDEX_URL
