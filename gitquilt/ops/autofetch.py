"""Fetch on demand: what ``checkout`` (and the hooks) use when the cache lacks something.

Config ``checkout.autofetch`` (on by default; ``quilt.checkout.autofetch`` in git config
overrides it) turns it off. With no remote configured there is nothing to fetch from,
and checkout reports the missing objects as before.
"""

from __future__ import annotations

from gitquilt.ops.checkout import Fetcher
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.workspace import PackageRef, Workspace


class AutoFetcher:
    """A checkout :data:`Fetcher` over the default remote; also fetches missing manifests."""

    def __init__(self, remote: str | None = None, progress: Progress | None = None) -> None:
        self.remote = remote
        self.progress = progress or NullProgress()

    def __call__(self, ws: Workspace, refs: list[PackageRef], missing: list[str]) -> None:
        from gitquilt.ops.transfer import fetch_digest_sizes, fetch_fragments

        tops = []
        for ref in refs:
            try:
                tops.append(ws.read_pointer(ref).top_hash)
            except Exception:  # noqa: BLE001 - sizes are a hint; a checkout at --rev has other pointers
                continue
        fetch_fragments(ws, fetch_digest_sizes(ws, missing, tops), remote=self.remote, progress=self.progress)

    def fetch_manifests(self, ws: Workspace, tops: list[str]) -> None:
        """Bring these manifests into the cache (checkout needs them before planning)."""
        from gitquilt.ops.transfer import fetch_manifests

        fetch_manifests(ws, tops, remote=self.remote)


def fetcher_for(ws: Workspace, progress: Progress | None = None) -> Fetcher | None:
    """The fetcher checkout should use, or None (autofetch off, or no remote configured)."""
    cfg = ws.config
    if not cfg.autofetch:
        return None
    if cfg.default_remote is None and len(cfg.remotes) != 1:
        return None
    return AutoFetcher(progress=progress)
