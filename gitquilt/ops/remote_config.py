"""``git quilt remote add/list/remove/default``: remotes in the tracked ``.gitquilt.toml``.

A fresh clone (a CI job) reads its remotes from the tracked file. Credentials never go
there (config.py refuses them); URLs and endpoints with control characters are refused
before anything is written or requested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gitquilt import fsutil
from gitquilt.config import CONFIG_FILE, RemoteConfig, check_no_control, dump_toml, load_toml, parse_config
from gitquilt.errors import ConfigError, NotFound, UsageError
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import check_endpoint, parse_size, parse_url

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Per-remote options ``remote add`` can set (others may be edited into the file by hand).
OPTIONS = ("checksum", "multipart_threshold", "multipart_chunksize", "memory", "max_attempts", "pack_threshold",
           "pack_size")


@dataclass
class RemoteInfo:
    """One remote as ``remote list`` shows it."""

    name: str
    url: str
    endpoint_url: str | None
    region: str | None
    default: bool
    options: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _doc(ws: Workspace) -> dict[str, Any]:
    return load_toml(ws.root / CONFIG_FILE)


def _save(ws: Workspace, doc: dict[str, Any]) -> None:
    parse_config(doc)  # never write a file the next command cannot read
    fsutil.atomic_write_bytes(ws.root / CONFIG_FILE, dump_toml(doc).encode("utf-8"))
    ws.git.stage([CONFIG_FILE])


def check_name(name: str) -> str:
    check_no_control(name, "remote name")
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid remote name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def add_remote(
    ws: Workspace, name: str, url: str, endpoint_url: str | None = None, region: str | None = None,
    default: bool = False, options: dict[str, Any] | None = None, replace: bool = False,
) -> bool:
    """Add (or with ``replace``, change) a remote; returns True when it became the default.

    The first remote added becomes the default.
    """
    check_name(name)
    parsed = parse_url(url, ws.root)  # refuses control characters, bad buckets, '..'
    check_endpoint(endpoint_url)
    if region is not None:
        check_no_control(region, "region")
        if not re.fullmatch(r"[a-z0-9-]{1,40}", region):
            raise ConfigError(f"invalid region {region!r}")
    if parsed.scheme != "s3" and (endpoint_url or region):
        raise UsageError("--endpoint-url and --region only apply to s3:// remotes")
    doc = _doc(ws)
    remotes = doc.setdefault("remotes", {})
    if name in remotes and not replace:
        raise UsageError(f"remote {name!r} already exists ({remotes[name].get('url')}); remove it first")
    spec: dict[str, Any] = {"url": url}
    if endpoint_url:
        spec["endpoint_url"] = endpoint_url
    if region:
        spec["region"] = region
    for key, value in (options or {}).items():
        if key not in OPTIONS:
            raise UsageError(f"unknown remote option {key!r} (known: {', '.join(OPTIONS)})")
        if value is None:
            continue
        if key == "checksum" and value not in ("sha256", "off"):
            raise UsageError("checksum must be sha256 or off")
        if key in ("multipart_threshold", "multipart_chunksize", "memory"):
            parse_size(value, key)
        spec[key] = value
    from gitquilt.ops.remote_packs import PackSettings

    PackSettings.from_options(spec, name)  # pack_threshold / pack_size: sizes, threshold <= pack size
    remotes[name] = spec
    core = doc.setdefault("core", {})
    became_default = default or not core.get("default_remote") or core.get("default_remote") not in remotes
    if became_default:
        core["default_remote"] = name
    _save(ws, doc)
    return bool(became_default)


def remove_remote(ws: Workspace, name: str) -> None:
    """Forget a remote (nothing on it is touched)."""
    doc = _doc(ws)
    remotes = doc.get("remotes", {})
    if name not in remotes:
        raise NotFound(f"no remote named {name!r}")
    del remotes[name]
    core = doc.get("core", {})
    if core.get("default_remote") == name:
        del core["default_remote"]
    _save(ws, doc)


def set_default(ws: Workspace, name: str) -> None:
    doc = _doc(ws)
    if name not in doc.get("remotes", {}):
        raise NotFound(f"no remote named {name!r}")
    doc.setdefault("core", {})["default_remote"] = name
    _save(ws, doc)


def list_remotes(ws: Workspace) -> list[RemoteInfo]:
    cfg = ws.config
    return [
        RemoteInfo(r.name, r.url, r.endpoint_url, r.region, r.name == cfg.default_remote, dict(r.options))
        for r in sorted(cfg.remotes.values(), key=lambda r: r.name)
    ]


def get_remote(ws: Workspace, name: str) -> RemoteConfig:
    cfg = ws.config.remotes.get(name)
    if cfg is None:
        raise NotFound(f"no remote named {name!r}")
    return cfg
