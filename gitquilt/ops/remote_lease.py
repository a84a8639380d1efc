"""Who uses a remote, and the lease gc holds while deleting (shared by push and gc --remote).

Every push that uploads something leaves ``repos/<clone id>.json`` (host, path, time)
before its first upload; ``gc --remote`` reads these markers to know whether other
clones use the remote, takes ``locks/gc.json`` while it deletes, and aborts when a
marker changed after it took the lease. A push checks the lease before uploading.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitquilt.errors import QuiltError, RemoteError
from gitquilt.ops.transfer_exec import RetryPolicy, list_with_retries
from gitquilt.remotes import REPOS_PREFIX, ObjectMissing, Remote

if TYPE_CHECKING:
    from gitquilt.gitrepo import GitRepo

LEASE_KEY = "locks/gc.json"
#: A lease older than this is considered abandoned (a killed gc).
LEASE_TTL = 3600.0


@dataclass(frozen=True)
class Marker:
    """``repos/<id>.json``: a clone that pushed to the remote."""

    id: str
    host: str
    path: str
    mtime: float | None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d", time.gmtime(self.mtime)) if self.mtime else "?"
        return f"{self.host}:{self.path} (last push {when})"


def read_markers(remote: Remote, policy: RetryPolicy) -> list[Marker]:
    out = []
    for info in list_with_retries(remote, REPOS_PREFIX, policy):
        name = info.key[len(REPOS_PREFIX):]
        if not name.endswith(".json"):
            continue
        host = path = "?"
        try:
            with contextlib.closing(remote.get(info.key)) as body:
                doc = json.loads(body.read(65536))
            host, path = str(doc.get("host", "?")), str(doc.get("path", "?"))
        except (QuiltError, ValueError, OSError):
            pass
        out.append(Marker(name[:-5], host, path, info.mtime))
    return out


def clone_id(root: Path) -> str | None:
    from gitquilt.gitrepo import GitRepo

    return GitRepo.discover(root).config_get("quilt.cloneid")


def check_lease(remote: Remote, now: float | None = None) -> None:
    """Raise RemoteError while another gc holds a fresh lease on the remote (push calls this)."""
    now = now if now is not None else time.time()
    try:
        with contextlib.closing(remote.get(LEASE_KEY)) as body:
            doc = json.loads(body.read(65536))
    except ObjectMissing:
        return
    except (ValueError, OSError):
        return
    started = float(doc.get("started", 0)) if isinstance(doc, dict) else 0.0
    if now - started < LEASE_TTL:
        who = f"{doc.get('host', '?')} pid {doc.get('pid', '?')}"
        raise RemoteError(
            f"a gc --remote is deleting objects on {remote.url} (started by {who} "
            f"{int(now - started)} s ago); push again when it is done"
        )


def mark_clone(root: Path, git: GitRepo, target: Remote) -> None:
    """Leave (or refresh) ``repos/<clone id>.json`` on the remote; best effort."""
    clone = git.config_get("quilt.cloneid")
    if not clone or not str(clone).isalnum():
        clone = uuid.uuid4().hex
        with contextlib.suppress(Exception):
            git.config_set("quilt.cloneid", clone)
    record = json.dumps({"id": clone, "host": socket.gethostname(), "path": str(root), "pushed": time.time()},
                        sort_keys=True).encode()
    with contextlib.suppress(QuiltError):
        target.put(f"{REPOS_PREFIX}{clone}.json", io.BytesIO(record), len(record), overwrite=True)
        target.flush()
