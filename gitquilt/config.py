"""Repository configuration: the tracked ``.gitquilt.toml`` plus per-clone overrides.

The tracked file is shared by every clone (a CI job reads its remotes from it) and
therefore untrusted: it can name remotes and tuning knobs, never credentials, never
executables, never where the local cache lives. Per-clone values come from git
config (``quilt.*``) and the environment (``QUILT_CACHE_DIR``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitquilt.errors import ConfigError

CONFIG_FILE = ".gitquilt.toml"
LINK_MODES = ("copy", "hardlink", "symlink")
DEFAULT_JOBS = 32
_FORBIDDEN_WORDS = (
    "secret", "password", "token", "access_key", "credential", "command", "exec", "hook", "driver", "textconv",
    "program", "shell",
)
#: Tables whose name holds a forbidden word but which may hold these harmless keys only.
_ALLOWED_TABLES = {"hooks": ("autofetch",)}


@dataclass
class RemoteConfig:
    """One named remote."""

    name: str
    url: str
    endpoint_url: str | None = None
    region: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    """Typed view of ``.gitquilt.toml`` merged with per-clone overrides."""

    remotes: dict[str, RemoteConfig] = field(default_factory=dict)
    default_remote: str | None = None
    link_mode: str = "copy"
    jobs: int = DEFAULT_JOBS
    fsync: str = "batch"
    autofetch: bool = True
    hooks_autofetch: bool = True
    raw: dict[str, Any] = field(default_factory=dict)


def check_no_control(value: str, what: str) -> str:
    """Refuse CR, LF, NUL and other control characters (RELIABILITY.md §54)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{what} contains a control character (CR, LF, NUL …): refusing it")
    return value


def _check_no_secrets(doc: Any, where: str, path: str = "") -> None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            lowered = str(k).lower()
            allowed = _ALLOWED_TABLES.get(lowered) if not path else None
            if allowed is not None and isinstance(v, dict):
                extra = [str(key) for key in v if key not in allowed]
                if extra:
                    raise ConfigError(
                        f"{where}: '{k}.{extra[0]}' is not allowed in the tracked config "
                        f"([{k}] may only set {', '.join(allowed)}; nothing executable can be configured)"
                    )
            elif any(w in lowered for w in _FORBIDDEN_WORDS):
                raise ConfigError(
                    f"{where}: '{path}{k}' is not allowed in the tracked config "
                    "(credentials come from boto3's usual chain; nothing executable can be configured)"
                )
            _check_no_secrets(v, where, f"{path}{k}.")
    elif isinstance(doc, list):
        for item in doc:
            _check_no_secrets(item, where, path)
    elif isinstance(doc, str):
        check_no_control(doc, f"{where}: value of '{path.rstrip('.')}'")


def load_toml(path: Path) -> dict[str, Any]:
    """Parse ``.gitquilt.toml`` (an absent file is an empty config)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    _check_no_secrets(doc, CONFIG_FILE)
    return doc


def parse_config(doc: dict[str, Any], overrides: dict[str, str] | None = None) -> Config:
    """Build a :class:`Config` from the tracked document and ``quilt.*`` git-config overrides."""
    overrides = overrides or {}
    core = doc.get("core", {})
    if not isinstance(core, dict):
        raise ConfigError(f"{CONFIG_FILE}: [core] must be a table")
    cfg = Config(raw=doc)
    remotes = doc.get("remotes", {})
    if not isinstance(remotes, dict):
        raise ConfigError(f"{CONFIG_FILE}: [remotes] must be a table")
    for name, spec in remotes.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise ConfigError(f"{CONFIG_FILE}: remote {name!r} needs a url")
        extra = {k: v for k, v in spec.items() if k not in ("url", "endpoint_url", "region")}
        cfg.remotes[name] = RemoteConfig(
            name=check_no_control(name, "remote name"),
            url=check_no_control(spec["url"], f"remote {name!r} url"),
            endpoint_url=_opt_str(spec, "endpoint_url", name),
            region=_opt_str(spec, "region", name),
            options=extra,
        )
    cfg.default_remote = overrides.get("quilt.defaultremote") or core.get("default_remote")
    if cfg.default_remote is not None and not isinstance(cfg.default_remote, str):
        raise ConfigError(f"{CONFIG_FILE}: core.default_remote must be a string")
    link_mode = overrides.get("quilt.linkmode") or core.get("link_mode", "copy")
    if link_mode not in LINK_MODES:
        raise ConfigError(f"link mode {link_mode!r} is not one of {', '.join(LINK_MODES)}")
    cfg.link_mode = link_mode
    jobs = overrides.get("quilt.jobs") or core.get("jobs", DEFAULT_JOBS)
    try:
        cfg.jobs = int(jobs)
    except (TypeError, ValueError):
        raise ConfigError(f"jobs must be an integer, not {jobs!r}") from None
    if not 1 <= cfg.jobs <= 1024:
        raise ConfigError(f"jobs must be between 1 and 1024, not {cfg.jobs}")
    fsync = overrides.get("quilt.fsync") or core.get("fsync", "batch")
    if fsync not in ("batch", "always", "never"):
        raise ConfigError(f"fsync must be batch, always or never, not {fsync!r}")
    cfg.fsync = fsync
    checkout = doc.get("checkout", {})
    hooks = doc.get("hooks", {})
    cfg.autofetch = _bool(overrides.get("quilt.checkout.autofetch"), checkout.get("autofetch", True))
    cfg.hooks_autofetch = _bool(overrides.get("quilt.hooks.autofetch"), hooks.get("autofetch", True))
    return cfg


def _opt_str(spec: dict[str, Any], key: str, name: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{CONFIG_FILE}: remote {name!r} {key} must be a string")
    return check_no_control(value, f"remote {name!r} {key}")


def _bool(override: str | None, default: object) -> bool:
    if override is not None:
        return override.lower() in ("1", "true", "yes", "on")
    return bool(default)


def cache_dir_override(git_config_value: str | None) -> Path | None:
    """Cache location from ``QUILT_CACHE_DIR`` or git config ``quilt.cache.dir``, if set."""
    value = os.environ.get("QUILT_CACHE_DIR") or git_config_value
    if not value:
        return None
    check_no_control(value, "cache directory")
    return Path(value).expanduser()


def dump_toml(doc: dict[str, Any]) -> str:
    """Serialise the small, two-level config document deterministically."""
    lines: list[str] = ["# gitquilt repository configuration (tracked; never put credentials here)"]

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        raise ConfigError(f"cannot store {v!r} in {CONFIG_FILE}")

    for section in sorted(k for k, v in doc.items() if isinstance(v, dict)):
        body = doc[section]
        plain = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if plain:
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {scalar(v)}" for k, v in plain.items()]
        for sub in sorted(k for k, v in body.items() if isinstance(v, dict)):
            lines.append(f"\n[{section}.{_key(sub)}]")
            lines += [f"{k} = {scalar(v)}" for k, v in body[sub].items()]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    if name.replace("-", "").replace("_", "").isalnum() and name.isascii():
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
