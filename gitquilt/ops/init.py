"""``git quilt init``: set a repository up for gitquilt (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitquilt import fsutil
from gitquilt.config import CONFIG_FILE, dump_toml
from gitquilt.ops.workspace import Workspace

GITATTRIBUTES_LINES = ["*.quilt diff=quilt"]
TEXTCONV = "git quilt textconv"


@dataclass
class InitResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def ensure_lines(ws: Workspace, relpath: str, lines: list[str]) -> bool:
    """Append the missing ``lines`` to a text file in the work tree; True if it changed."""
    path = ws.root / relpath
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    present = set(text.splitlines())
    missing = [ln for ln in lines if ln not in present]
    if not missing:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    fsutil.atomic_write_bytes(path, (text + "\n".join(missing) + "\n").encode("utf-8"))
    return True


def init(ws: Workspace) -> InitResult:
    """Write ``.gitquilt.toml`` and ``.gitattributes`` and set ``diff.quilt.textconv``."""
    result = InitResult()
    cfg = ws.root / CONFIG_FILE
    if not cfg.exists():
        fsutil.atomic_write_bytes(cfg, dump_toml({"core": {"link_mode": "copy"}}).encode())
        result.created.append(CONFIG_FILE)
    if ensure_lines(ws, ".gitattributes", GITATTRIBUTES_LINES):
        result.updated.append(".gitattributes")
    if ws.git.config_get("diff.quilt.textconv") != TEXTCONV:
        ws.git.config_set("diff.quilt.textconv", TEXTCONV)
        result.updated.append("git config diff.quilt.textconv")
    ws.cache.ensure()
    ws.git.stage([p for p in (CONFIG_FILE, ".gitattributes") if (ws.root / p).exists()])
    return result
